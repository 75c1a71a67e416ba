"""Generate N responses per conversation with the best engine available.

An engine is an object the sample stage opens once and keeps for all its chunks
(:func:`open_engine`), then closes: vLLM when asked for, or (``auto``) when it is
importable and a GPU is present; transformers' batched ``generate`` runs anywhere.
"""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlaif.sampling.engine import Engine


def pick_backend(requested: str) -> str:
    if requested != "auto":
        return requested
    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


@contextmanager
def open_engine(
    model: Path | str,
    *,
    backend: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    gpu_memory_utilization: float = 0.5,
    server: Any = None,
) -> Iterator[Engine]:
    """The engine ``backend`` names for ``model``, closed when the block ends. ``seed`` seeds
    a vLLM engine (a per-request seed crashes its CPU build); transformers seeds each call;
    ``openai`` asks ``server`` (a ``ServedModelConfig``) for ``model``'s answers."""
    if backend == "openai":
        from rlaif.sampling.served import ServedEngine

        engine: Engine = ServedEngine(server, model)
    elif pick_backend(backend) == "vllm":
        from rlaif.sampling.vllm import VllmEngine

        engine = VllmEngine(model, dtype, seed, gpu_memory_utilization)
    else:
        from rlaif.sampling.transformers import TransformersEngine

        engine = TransformersEngine(model, dtype)
    try:
        yield engine
    finally:
        engine.close()
        gc.collect()
