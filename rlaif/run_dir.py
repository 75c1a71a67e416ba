"""What a run directory holds: each stage's output folder and the manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlaif.errors import ConfigError

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


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no manifest.json here; is this a run directory?")
    return json.loads(path.read_text())
