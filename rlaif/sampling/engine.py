"""What every sampling engine speaks: the parameters it is asked with and the completions it
returns (kept apart from the engines so that each can import it without the others)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rlaif.config import SampleConfig


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
    seed: int = 0

    @property
    def asked(self) -> int:
        """Answers to ask an engine for: greedy decoding has one, repeated ``n`` times (vLLM
        refuses ``n > 1`` without sampling)."""
        return 1 if self.temperature == 0 else self.n

    @property
    def asked_top_p(self) -> float:
        """``top_p`` when sampling; 1.0 when greedy, where it means nothing."""
        return self.top_p if self.temperature > 0 else 1.0


class Engine(Protocol):
    def generate(
        self, conversations: list[list[dict[str, str]]], params: GenerationParams
    ) -> list[list[Completion]]:
        """``params.n`` completions for each conversation, in input order."""
        ...

    def close(self) -> None:
        """Free the model (and, for vLLM, its GPU memory)."""
        ...


def generation_params(cfg: SampleConfig, seed: int) -> GenerationParams:
    """The parameters the ``sample:`` section asks with, for one chunk's ``seed``."""
    return GenerationParams(
        n=cfg.n,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.batch_size,
        seed=seed,
    )
