"""What a run directory holds: each stage's output folder and the manifest."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from rlaif.errors import ConfigError
from rlaif.redaction import redact

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"

OUTPUT_DIRS = {
    "sample": "samples",
    "pair": "pairs",
    "judge": "judgments",
    "aggregate": "preferences",
    "train": "train",
    "evaluate": "evaluation",
}


def stage_cost(entry: dict[str, Any]) -> float | None:
    """What a stage has paid judges in this run directory, over all its attempts: earlier
    attempts (``spent_before_usd``), then the last one's ``counts.cost_usd`` once it ended,
    or its ``spent_usd`` so far while running or after a crash. None: nothing recorded."""
    parts = [entry.get("spent_before_usd")]
    counts = entry.get("counts") or {}
    parts.append(counts["cost_usd"] if "cost_usd" in counts else entry.get("spent_usd"))
    known = [p for p in parts if isinstance(p, int | float)]
    return round(sum(known), 6) if known else None


def run_cost(manifest: dict[str, Any]) -> float | None:
    """Sum of :func:`stage_cost` over the stages; None when no stage recorded a cost."""
    costs = [c for c in map(stage_cost, manifest.get("stages", {}).values()) if c is not None]
    return round(sum(costs), 6) if costs else None


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run directory, or say plainly why it cannot be used."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(
            f"{run_dir}: the run directory is a file, not a folder; pass another --run-dir "
            "or move the file away"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{run_dir}: cannot write the run directory ({exc.strerror}); make it (or "
            "output_dir) writable, or pass another --run-dir"
        ) from None


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no manifest.json here; is this a run directory?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: damaged manifest ({exc}); the next `rlaif run` on this directory moves it "
            "aside and rebuilds it (stages run again, judgments come from the store for free)"
        ) from None


def recover_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest, or an empty one. A damaged manifest (a crash mid-write on a disk
    without atomic renames, a hand edit) is moved aside with a warning, not a dead end: it
    only records progress, so stages simply run again and stored judgments are reused."""
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
        if isinstance(manifest, dict):
            return manifest
        problem = "not a JSON object"
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = str(exc)
    aside = path.with_name(f"{MANIFEST}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    log.warning(
        "%s: damaged manifest (%s), moved to %s; stages will run again (judgments already in "
        "the store are reused, not paid again)",
        path,
        problem,
        aside,
    )
    return {}


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomically, and with every API key value redacted (a provider may have echoed one
    into an error that the manifest records)."""
    path = Path(run_dir) / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(redact(json.dumps(manifest, indent=2)) or "")
    os.replace(tmp, path)
