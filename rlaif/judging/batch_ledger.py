"""The durable record of every provider batch a judge has submitted, one JSONL file per judge.

Each line is an event: ``submitted`` (the provider's batch id, input file id, and the cache
keys it covers), then ``collected`` once its results are in the judgment store. The file is
only appended to and each line is fsynced, so a batch the provider accepted is on disk
before anything else happens, and a torn last line (a crash mid-write) loses nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRecord:
    provider: str
    batch_id: str
    input_file_id: str | None
    """OpenAI uploads the requests as a file first; Anthropic takes them inline (None)."""
    identity: str
    """Hash of the judge's identity: results are read with the rubric they were asked with."""
    keys: list[str]
    submitted_at: float
    state: Literal["open", "collected"] = "open"
    provider_status: str | None = None
    """How the provider ended the batch (``completed``, ``expired``, ``ended``, ...)."""
    collected_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    """Verdict statuses of the collected results, e.g. ``{"ok": 98, "error": 2}``."""


class BatchLedger:
    """``batch_dir/<judge-name>.jsonl``: what was submitted, and what is still open."""

    def __init__(self, path: Path):
        self.path = path
        self._records: dict[str, BatchRecord] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                log.warning(
                    "%s:%d: unreadable line skipped (a write cut short?)", self.path, number
                )
                continue
            kind = event.pop("event")
            if kind == "submitted":
                self._records[event["batch_id"]] = BatchRecord(**event)
            elif event["batch_id"] in self._records:
                record = self._records[event.pop("batch_id")]
                self._records[record.batch_id] = replace(record, **event)
            else:
                log.warning("%s:%d: update for unknown batch %s", self.path, number, event)

    def records(self) -> list[BatchRecord]:
        return list(self._records.values())

    def open(self, identity: str) -> list[BatchRecord]:
        """Batches of this judge configuration whose results are not collected yet."""
        return [r for r in self._records.values() if r.state == "open" and r.identity == identity]

    def submitted(self, record: BatchRecord) -> None:
        self._records[record.batch_id] = record
        self._append({"event": "submitted", **asdict(record)})

    def collected(self, batch_id: str, provider_status: str, counts: dict[str, int]) -> None:
        update: dict[str, Any] = {
            "state": "collected",
            "provider_status": provider_status,
            "collected_at": time.time(),
            "counts": counts,
        }
        self._records[batch_id] = replace(self._records[batch_id], **update)
        self._append({"event": "collected", "batch_id": batch_id, **update})

    def _append(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as f:
            # After a torn last line, start a fresh one rather than extend the broken one.
            torn = f.tell() > 0 and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n"
            f.write((b"\n" if torn else b"") + json.dumps(event).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
