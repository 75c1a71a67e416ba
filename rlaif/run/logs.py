"""Run logs: a readable ``run.log`` and a machine-readable ``run.jsonl`` side by side.

Each JSON line has ``ts``, ``level``, ``logger``, ``message`` and any structured fields a
caller passed with ``extra={"event": ..., ...}`` (stage starts and ends carry the stage,
status, seconds, counts and cost), so a nightly job can be monitored with ``jq``. Both
pass through :class:`rlaif.redaction.RedactingFilter`, so no API key reaches them.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path

from rlaif.redaction import redact_handlers

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info or record.exc_text:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def attach_run_logs(logger: logging.Logger, log_dir: Path) -> list[logging.Handler]:
    """Send ``logger`` to ``log_dir/run.log`` and ``log_dir/run.jsonl``; returns the handlers
    so the caller can detach them when the run ends."""
    log_dir.mkdir(parents=True, exist_ok=True)
    text = logging.FileHandler(log_dir / "run.log")
    text.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    jsonl = logging.FileHandler(log_dir / "run.jsonl")
    jsonl.setFormatter(JsonLinesFormatter())
    redact_handlers((text, jsonl))
    for handler in (text, jsonl):
        logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return [text, jsonl]


def detach(logger: logging.Logger, handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()
