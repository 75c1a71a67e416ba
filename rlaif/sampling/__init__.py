"""Generate N responses per conversation with the best engine available.

The loaded engine is kept between calls (a stage samples in chunks) until ``release()``.

vLLM is used when asked for, or (``auto``) when it is importable and a GPU is
present; transformers' batched ``generate`` is the fallback that runs anywhere.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int
    finished: bool
    """False when generation stopped at ``max_new_tokens`` instead of an end-of-turn token."""


@dataclass(frozen=True)
class GenerationParams:
    n: int = 1
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 0.95
    batch_size: int = 16
    dtype: str = "auto"
    seed: int = 0


class EngineSlot:
    """The last engine loaded, reused while the same model is asked for again."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.engine = None

    def get(self, key: tuple, load):
        if self.key != key:
            self.clear()
            self.engine = load()
            self.key = key
        return self.engine

    def clear(self) -> None:
        self.key, self.engine = None, None


def pick_backend(requested: str) -> str:
    if requested != "auto":
        return requested
    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


def generate(
    model: Path | str,
    conversations: list[list[dict[str, str]]],
    params: GenerationParams,
    *,
    backend: str = "auto",
    desc: str = "sampling",
) -> list[list[Completion]]:
    """Return ``params.n`` completions for each conversation, in input order."""
    if pick_backend(backend) == "vllm":
        from rlaif.sampling.vllm import generate_vllm

        return generate_vllm(model, conversations, params)
    from rlaif.sampling.transformers import generate_transformers

    return generate_transformers(model, conversations, params, desc=desc)


def release() -> None:
    """Free the engines kept loaded between the chunks of one stage."""
    import gc

    for name in ("rlaif.sampling.transformers", "rlaif.sampling.vllm"):
        if name in sys.modules:
            sys.modules[name].ENGINE.clear()
    gc.collect()
