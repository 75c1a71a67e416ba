"""What a run directory holds, in one place: every path in it, its manifest (read, recovered
and written atomically) and its lock. The CLI, the pipeline, nightly runs, the estimate and
the report all go through :class:`RunDir`.

```
<run-dir>/manifest.json  prompts/{train,heldout}  <stage outputs>  samples.parts/
          checkpoints/   batches/<judge>.jsonl    logs/            .lock
```
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rlaif.errors import ConfigError, writing
from rlaif.redaction import redact
from rlaif.run.locking import RunLock
from rlaif.run.stage_table import BY_NAME, STAGES

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
OUTPUT_DIRS = {s.name: s.output for s in STAGES}


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def batches(self) -> Path:
        """Provider batch ids, one ledger per judge (``<judge>.jsonl``)."""
        return self.path / "batches"

    def output(self, stage: str) -> Path:
        return self.path / BY_NAME[stage].output

    def prompts(self, split: str) -> Path:
        """``train`` or ``heldout``: the prompt split the run used."""
        return self.path / "prompts" / split

    def sample_parts(self, fingerprint: str) -> Path:
        """Sampled chunks while the sample stage runs, keyed by what is sampled."""
        return self.path / "samples.parts" / fingerprint[:12]

    def checkpoints(self, fingerprint: str) -> Path:
        """Training checkpoints, keyed by what is trained (outside ``train/``, which is
        rebuilt on every attempt)."""
        return self.path / "checkpoints" / fingerprint[:12]

    @property
    def policy(self) -> Path:
        """The trained policy."""
        return self.output("train") / "model"

    @property
    def evaluation_summary(self) -> Path:
        return self.output("evaluate") / "summary.json"

    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    @property
    def lock_path(self) -> Path:
        """Held while a process runs this directory."""
        return self.path / ".lock"

    def lock(self, what: str) -> RunLock:
        return RunLock(self.lock_path, what=what)

    def prepare(self) -> None:
        """Create the directory, or say plainly why it cannot be used."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(
                f"{self.path}: the run directory is a file, not a folder; pass another "
                "--run-dir or move the file away"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.touch()
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"{self.path}: cannot write the run directory ({exc.strerror}); make it (or "
                "output_dir) writable, or pass another --run-dir"
            ) from None

    def read_manifest(self) -> dict[str, Any]:
        if not self.has_manifest():
            raise ConfigError(f"{self.path}: no manifest.json here; is this a run directory?")
        try:
            manifest = json.loads(self.manifest_path.read_text())
            problem = manifest_problem(manifest)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = str(exc)
        if problem is None:
            return manifest
        raise ConfigError(
            f"{self.manifest_path}: damaged manifest ({problem}); the next `rlaif run` on this "
            "directory moves it aside and rebuilds it (stages run again, judgments come from "
            "the store for free)"
        )

    def recover_manifest(self) -> dict[str, Any]:
        """The run's manifest, or an empty one. A damaged manifest (a crash mid-write on a
        disk without atomic renames, a hand edit) is moved aside with a warning, not a dead
        end: it only records progress, so stages run again and stored judgments are reused."""
        if not self.manifest_path.exists():
            return {}
        try:
            manifest = json.loads(self.manifest_path.read_text())
            problem = manifest_problem(manifest)
            if problem is None:
                return manifest
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = str(exc)
        aside = self.path / f"{MANIFEST}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        self.manifest_path.rename(aside)
        log.warning(
            "%s: damaged manifest (%s), moved to %s; stages will run again (judgments already "
            "in the store are reused, not paid again)",
            self.manifest_path,
            problem,
            aside,
        )
        return {}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Atomically, and with every API key value redacted (a provider may have echoed one
        into an error that the manifest records)."""
        tmp = self.path / (MANIFEST + ".tmp")
        with writing(self.manifest_path):
            tmp.write_text(redact(json.dumps(manifest, indent=2)) or "")
        os.replace(tmp, self.manifest_path)

    def update_manifest(self, **fields: Any) -> None:
        manifest = self.read_manifest()
        manifest.update(fields)
        self.write_manifest(manifest)


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


class _StageRecord(BaseModel, extra="allow"):
    status: str
    counts: dict[str, Any] = {}


class _Manifest(BaseModel, extra="allow"):
    """The shape every reader of a manifest relies on (each key is optional until written)."""

    stages: dict[str, _StageRecord] = {}
    config: dict[str, Any] = {}
    evaluation: dict[str, Any] | None = None
    nightly: dict[str, Any] | None = None


def manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest's shape, or None when it is whole."""
    if not isinstance(manifest, dict):
        kinds = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
        return f"a JSON {kinds.get(type(manifest), 'null')}, not an object"
    try:
        _Manifest.model_validate(manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
    return None


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    return RunDir(run_dir).read_manifest()


CHAIN_FILE = "rounds.json"
"""A rounds run's chain, at the top of its directory (each round is a run directory below)."""


def read_chain(path: Path) -> dict[str, Any] | None:
    """The chain of a rounds run (``{"rounds": [...], "stopped": ...}``); None when ``path``
    is not a rounds run (an ordinary run directory has a manifest at its top)."""
    file = Path(path) / CHAIN_FILE
    if not file.is_file() or RunDir(path).has_manifest():
        return None
    return json.loads(file.read_text())
