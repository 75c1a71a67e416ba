"""Judge through a provider's batch API across runs: collect what has ended, submit what is
neither stored nor awaited, and optionally wait.

Money is never spent twice on one judgment: a key whose answer is stored is not submitted,
and neither is a key in a batch still open. Both rest on the ledger
(``batch_dir/<judge>.jsonl``), written the moment the provider returns a batch id. The one
window where a paid batch could be lost is a crash between the provider accepting the batch
and that line reaching the disk (one fsynced append), or a ``create`` call whose answer is
lost in transit and is then retried: the batch's keys would be asked again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rlaif.hashing import stable_hash
from rlaif.judges.batch_api import BatchStatus, ProviderBatches, failed
from rlaif.judges.failures import FatalJudgeError, describe_error
from rlaif.judges.records import Budget, JudgeRequest, Verdict
from rlaif.judging.batch_ledger import BatchLedger, BatchRecord
from rlaif.judging.schema import judgment_record, record_base

if TYPE_CHECKING:
    from rlaif.config import BatchConfig
    from rlaif.judging.plan import Task
    from rlaif.judging.store import JudgmentStore

log = logging.getLogger(__name__)


class BatchingJudge(Protocol):
    """What a batch run needs from the judge it runs for (an API judge)."""

    name: str
    batch: BatchConfig

    def identity(self) -> dict[str, Any]: ...
    def provenance(self) -> dict[str, str]: ...
    def render(self, request: JudgeRequest) -> Any: ...
    def batch_client(self) -> ProviderBatches: ...
    def bodies(self, requests: list[JudgeRequest]) -> tuple[list[dict[str, Any]], list[str]]: ...
    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None: ...
    def estimated_tokens(self, rendered: Any) -> tuple[int, int]: ...
    def fatal(self, exc: BaseException) -> FatalJudgeError | None: ...
    def retryable(self, exc: BaseException) -> bool: ...


class BatchRun:
    """One judge's batches for one stage invocation (``run``); see the module docstring."""

    def __init__(
        self, backend: BatchingJudge, *, store: JudgmentStore, budget: Budget, batch_dir: Path
    ):
        self.backend = backend
        self.cfg = backend.batch
        self.store = store
        self.budget = budget
        self.base = record_base(backend)
        self.ledger = BatchLedger(batch_dir / f"{backend.name}.jsonl")
        self.identity = stable_hash(backend.identity())
        self.prompt_hashes: dict[str, str] = {}

    def run(self, todo: Sequence[Task]) -> dict[str, str]:
        """Judge ``todo`` (requests with no stored answer, or a stored error); returns the
        keys still awaiting a provider batch, each with its batch id."""
        self.prompt_hashes = {t.key: t.prompt_hash for t in todo}
        client: ProviderBatches = self.backend.batch_client()
        try:
            # Answered just now (errors included, asked again next run) or still awaited.
            settled = self._collect(client) | set(self.pending())
            unique = {t.key: t for t in todo}.values()
            self._submit(client, [t for t in unique if t.key not in settled])
            if self.cfg.wait:
                self._wait(client)
        finally:
            client.close()
        self._warn_foreign()
        return self.pending()

    def pending(self) -> dict[str, str]:
        return {k: r.batch_id for r in self.ledger.open(self.identity) for k in r.keys}

    # -- collecting -----------------------------------------------------------------------
    def _collect(self, client: ProviderBatches) -> set[str]:
        """Store the results of every open batch that has ended; returns the keys answered."""
        done: set[str] = set()
        for record in self.ledger.open(self.identity):
            try:
                status = client.status(record.batch_id)
                if status.ended:
                    done |= self._collect_one(client, record, status)
            except Exception as exc:
                self._raise_unless_transient(exc)
                log.warning(
                    "judge %s: could not collect batch %s (%s); it stays pending",
                    self.backend.name,
                    record.batch_id,
                    describe_error(exc),
                )
        return done

    def _collect_one(
        self, client: ProviderBatches, record: BatchRecord, status: BatchStatus
    ) -> set[str]:
        covered = set(record.keys)
        verdicts = {k: v for k, v in client.results(status) if k in covered}
        missing = failed(
            f"no result: the batch ended '{status.status}'"
            + (f" ({status.detail})" if status.detail else "")
        )
        rows, cost = [], 0.0
        for key in record.keys:
            verdict = self._discounted(verdicts.get(key) or missing, record.batch_id)
            cost += verdict.cost_usd or 0.0
            rows.append(judgment_record(self.base, key, self.prompt_hashes.get(key), verdict))
        self.store.put_many(rows)
        self.budget.add(cost)
        counts = dict(Counter(row["status"] for row in rows))
        self.ledger.collected(record.batch_id, status.status, counts)
        log.info(
            "judge %s: collected batch %s (%s): %s, $%.4f",
            self.backend.name,
            record.batch_id,
            status.status,
            counts,
            cost,
        )
        return set(record.keys)

    def _discounted(self, verdict: Verdict, batch_id: str) -> Verdict:
        """At the batch price; an error names its batch."""
        if verdict.status == "error":
            verdict = replace(verdict, error=f"batch {batch_id}: {verdict.error}")
        if verdict.cost_usd is None:
            return verdict
        saved = verdict.cache_saved_usd
        return replace(
            verdict,
            cost_usd=verdict.cost_usd * self.cfg.discount,
            cache_saved_usd=None if saved is None else saved * self.cfg.discount,
        )

    # -- submitting -----------------------------------------------------------------------
    def _submit(self, client: ProviderBatches, todo: Sequence[Task]) -> None:
        entries = list(self._affordable(client, todo))
        if len(entries) < len(todo):
            log.warning(
                "judge %s: budget max_cost_usd=%s leaves %d requests unsubmitted",
                self.backend.name,
                self.budget.max_cost_usd,
                len(todo) - len(entries),
            )
        chunks = chunked(entries, self.cfg.max_requests, client.max_bytes)
        for number, chunk in enumerate(chunks):
            keys = [key for key, _, _ in chunk]
            try:
                batch_id, file_id = client.submit([request for _, request, _ in chunk])
            except Exception as exc:
                self._raise_unless_transient(exc)
                self._submission_failed(chunks[number:], exc)
                return
            # Recorded before anything else happens: from here on the batch is never lost.
            self.ledger.submitted(
                BatchRecord(
                    provider=client.provider,
                    batch_id=batch_id,
                    input_file_id=file_id,
                    identity=self.identity,
                    keys=keys,
                    submitted_at=time.time(),
                )
            )
            log.info(
                "judge %s: submitted batch %s (%d requests)",
                self.backend.name,
                batch_id,
                len(keys),
            )

    def _affordable(
        self, client: ProviderBatches, todo: Sequence[Task]
    ) -> Iterator[tuple[str, dict[str, Any], int]]:
        """``(key, batch entry, its size in bytes)`` for as many requests as the budget covers:
        a batch's cost is known only once collected, so each request reserves the most it
        can cost (its input and the output cap, at the discounted price)."""
        reserved = 0.0
        bodies, _ = self.backend.bodies([task.request for task in todo])
        for task, body in zip(todo, bodies, strict=True):
            messages = self.backend.render(task.request)
            limit = self.budget.max_cost_usd
            if limit is not None and self.budget.spent + reserved >= limit:
                return
            worst = self.backend.cost(*self.backend.estimated_tokens(messages))
            reserved += (worst or 0.0) * self.cfg.discount
            entry = client.request(task.key, body)
            yield task.key, entry, len(_json_bytes(entry))

    def _submission_failed(
        self, chunks: list[list[tuple[str, dict[str, Any], int]]], exc: Exception
    ) -> None:
        """A batch the provider did not take: its keys (and the rest) are ``error`` verdicts,
        asked again on the next run, as an online call that gave up would be."""
        reason = f"batch submission failed: {describe_error(exc)}"
        log.warning("judge %s: %s", self.backend.name, reason)
        self.store.put_many(
            judgment_record(self.base, key, self.prompt_hashes.get(key), failed(reason))
            for chunk in chunks
            for key, _, _ in chunk
        )

    def _raise_unless_transient(self, exc: Exception) -> None:
        """A provider call that failed after the SDK's retries: what every call would repeat
        (400, 401, 403, 404) stops the stage, as online; a bug in reading an answer surfaces;
        only what can succeed later (429, 5xx, timeouts, dropped connections) is let go."""
        fatal = self.backend.fatal(exc)
        if fatal is not None:
            raise fatal from exc
        if not self.backend.retryable(exc):
            raise exc

    # -- waiting --------------------------------------------------------------------------
    def _wait(self, client: ProviderBatches) -> None:
        deadline = time.monotonic() + self.cfg.max_wait_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(min(self.cfg.poll_seconds, max(0.0, deadline - time.monotonic())))
            self._collect(client)
        if self.pending():
            log.warning(
                "judge %s: %d batches still open after max_wait_s=%s; re-run to collect",
                self.backend.name,
                len(self.ledger.open(self.identity)),
                self.cfg.max_wait_s,
            )

    def _warn_foreign(self) -> None:
        others = [
            r for r in self.ledger.records() if r.state == "open" and r.identity != self.identity
        ]
        if others:
            log.warning(
                "judge %s: %d open batches in %s were submitted under another configuration of "
                "this judge and are not collected: %s",
                self.backend.name,
                len(others),
                self.ledger.path,
                ", ".join(r.batch_id for r in others),
            )


def chunked(
    entries: list[tuple[str, dict[str, Any], int]], max_requests: int, max_bytes: int
) -> list[list[tuple[str, dict[str, Any], int]]]:
    """Split batch entries so that no batch is above either provider limit."""
    chunks: list[list[tuple[str, dict[str, Any], int]]] = []
    size = 0
    for entry in entries:
        if not chunks or len(chunks[-1]) >= max_requests or size + entry[2] > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += entry[2]
    return chunks


def _json_bytes(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry).encode() + b"\n"
