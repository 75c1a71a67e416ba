"""What the batch runner needs from a provider's batch API, whichever provider it is."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from rlaif.judges.records import Verdict


@dataclass(frozen=True)
class BatchStatus:
    batch_id: str
    status: str
    """The provider's own word for it (``in_progress``, ``completed``, ``expired``, ``ended``)."""
    ended: bool
    """No request of the batch will change any more: its results can be collected."""
    detail: str = ""
    """Why a batch ended without results (a failed validation, an expiry), for error verdicts."""
    raw: Any = None
    """The provider's batch object, handed back to ``results``."""


class ProviderBatches(Protocol):
    provider: str
    max_bytes: int
    """The provider's size limit for one batch, with a margin."""

    def request(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """One batch entry: the online request body under ``key`` as its custom id."""
        ...

    def submit(self, requests: list[dict[str, Any]]) -> tuple[str, str | None]:
        """Create a batch; returns its id and the uploaded input file's id (if any)."""
        ...

    def status(self, batch_id: str) -> BatchStatus: ...

    def results(self, status: BatchStatus) -> Iterator[tuple[str, Verdict]]:
        """``(custom id, verdict)`` for each request the ended batch has an outcome for;
        requests that failed inside the batch are ``error`` verdicts with the reason."""
        ...

    def close(self) -> None: ...


def failed(reason: str) -> Verdict:
    return Verdict(status="error", raw_output="", error=reason)
