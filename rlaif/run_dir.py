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


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no manifest.json here; is this a run directory?")
    return json.loads(path.read_text())
