"""The protocol every judge backend implements, and the records it exchanges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class JudgeRequest:
    """One comparison in one order: is ``first`` better than ``second`` for ``prompt``?"""

    prompt: str
    first: str
    second: str


@dataclass(frozen=True)
class Verdict:
    status: Literal["ok", "invalid", "refused", "error"]
    """``invalid``: an answer that could not be read; ``error``: no answer (retried on re-run)."""
    raw_output: str
    verdict: str | None = None
    """The label the judge chose, as the rubric spells it."""
    p_first: float | None = None
    """P(first wins), normalised over the two labels."""
    label_mass: float | None = None
    """Probability the judge put on the two labels at all; low means it was not answering."""
    error: str | None = None


class JudgeBackend(Protocol):
    name: str

    def identity(self) -> dict[str, Any]:
        """What makes two answers interchangeable: backend kind, model, decoding, rubric."""
        ...

    def provenance(self) -> dict[str, str]:
        """``rubric_id`` and ``rubric_hash`` recorded with each judgment."""
        ...

    def render(self, request: JudgeRequest) -> Any:
        """The exact input sent for a request; hashed into the cache key."""
        ...

    def judge(self, requests: list[JudgeRequest]) -> list[Verdict]:
        """Judge a batch; one failing request yields an ``error`` verdict, not an exception."""
        ...
