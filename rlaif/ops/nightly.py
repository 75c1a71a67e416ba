"""``rlaif nightly``: one dated run per night over the prompts no earlier night has seen.

``<output_dir>/<name>/nightly/`` holds:

- ``<YYYY-MM-DD>/``: that night's run directory (a normal run: manifest, stages, logs);
- ``heldout/``: the evaluation prompts, frozen on the first night so nights compare;
- ``preferences/v0001/``, ``v0002/``...: the cumulative preference dataset, one immutable
  version per night that added preferences (each row says which ``night`` produced it);
- ``ledger.sqlite``: which prompt contents (hashes) successful nights consumed, and the
  versions; the source of truth for "seen" and "latest";
- ``logs/run.log``, ``logs/run.jsonl``: every night's log lines in one place;
- ``.lock``: one nightly job per pipeline at a time.

A night is resumable like any run: re-running the same date continues it, and a finished
night does nothing. A prompt counts as seen only once its night's preferences are
published, so the prompts of a night that failed or stopped short come back the next night
(their judgments are in the store already, so they are not paid again).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets

from rlaif.errors import ConfigError
from rlaif.hashing import stable_hash
from rlaif.prompts import load_prompts, split_prompts
from rlaif.run.datasets_io import load_dir, save_atomic
from rlaif.run.locking import RunLock
from rlaif.run.logs import attach_run_logs, detach
from rlaif.run.run_dir import RunDir, run_cost
from rlaif.run.runner import Pipeline, RunResult
from rlaif.run.stage_table import DATA_STAGES, TRAIN_STAGES
from rlaif.run.start_policy import StartPolicy
from rlaif.stages.aggregate import incomplete_prompt_ids

log = logging.getLogger(__name__)


@dataclass
class NightResult:
    night_dir: Path
    date: str
    new_prompts: int
    version: int | None = None
    """The cumulative preference version after this night (None: there is none yet)."""
    run: RunResult | None = None

    @property
    def partial(self) -> str | None:
        return self.run.partial if self.run else None

    @property
    def waiting(self) -> bool:
        return bool(self.run and self.run.waiting)


def nightly_root(pipeline: Pipeline) -> Path:
    return Path(pipeline.config.output_dir) / pipeline.config.name / "nightly"


def prompt_hash(prompt: str, reference: str | None = None) -> str:
    """Prompts are recognised by content, so a renumbered or re-exported source is no
    reason to judge a prompt again."""
    return stable_hash([prompt, reference])


def run_nightly(pipeline: Pipeline, date: str | None = None) -> NightResult:
    """Run (or resume) the night ``date`` (default: today), publish its preferences and,
    with ``nightly.train``, train and evaluate on the cumulative dataset."""
    night = _parse_date(date)
    root = nightly_root(pipeline)
    with RunLock(root / ".lock", what=f"nightly pipeline '{pipeline.config.name}'"):
        handlers = attach_run_logs(logging.getLogger("rlaif"), root / "logs")
        ledger = Ledger(root / "ledger.sqlite")
        try:
            return _night(pipeline, root, night, ledger)
        finally:
            ledger.close()
            detach(logging.getLogger("rlaif"), handlers)


def _night(pipeline: Pipeline, root: Path, night: str, ledger: Ledger) -> NightResult:
    cfg = pipeline.config
    night_dir = root / night
    train_set, heldout = _night_prompts(pipeline, root, night_dir, ledger)
    if len(train_set) == 0:
        log.info("nightly %s: no prompts that earlier nights have not seen; nothing to do", night)
        latest = ledger.latest()
        return NightResult(night_dir, night, 0, latest["version"] if latest else None)
    info = {"date": night, "new_prompts": len(train_set), "heldout_prompts": len(heldout)}
    budget = _remaining_budget(cfg.nightly.max_cost_usd, night_dir)
    start = _latest_policy(root, night) if cfg.nightly.policy == "latest" else None
    if start:
        log.info("nightly %s: sampling from and training from %s", night, start.path)
    run = pipeline.run(
        DATA_STAGES,
        night_dir,
        prompts=(train_set, heldout),
        extra={"nightly": info},
        budget_usd=budget,
        start=start,
    )
    if run.partial:
        return NightResult(night_dir, night, len(train_set), run=run)
    published = ledger.version_of(night) or _publish(root, night, night_dir, train_set, ledger)
    info.update(
        version=published["version"], cumulative_rows=published["rows"], added=published["added"]
    )
    RunDir(night_dir).update_manifest(nightly=info)
    result = NightResult(night_dir, night, len(train_set), published["version"], run)
    if cfg.nightly.train and published["version"]:
        result.run = pipeline.run(
            TRAIN_STAGES,
            night_dir,
            prompts=(train_set, heldout),
            train_input=root / "preferences" / _version_name(published["version"]),
            extra={"nightly": info},
            budget_usd=_remaining_budget(cfg.nightly.max_cost_usd, night_dir),
            start=start,
        )
    return result


def _latest_policy(root: Path, night: str) -> StartPolicy | None:
    """The policy of the latest night before ``night`` that trained one (``nightly.policy:
    latest``); None before any did, when the SFT model is the start."""
    earlier = sorted(
        (p for p in root.iterdir() if _is_date(p.name) and p.name < night), reverse=True
    )
    return next(filter(None, map(StartPolicy.trained_by, earlier)), None)


def _is_date(name: str) -> bool:
    try:
        Date.fromisoformat(name)
    except ValueError:
        return False
    return True


def _night_prompts(
    pipeline: Pipeline, root: Path, night_dir: Path, ledger: Ledger
) -> tuple[Dataset, Dataset]:
    """The night's prompts: chosen once, then read back on every resume of that night."""
    cfg = pipeline.config
    saved = RunDir(night_dir).prompts("train")
    heldout_dir = root / "heldout"
    if saved.exists() and heldout_dir.exists():
        return load_dir(saved), load_dir(heldout_dir)
    pool = load_prompts(cfg.prompts)
    if heldout_dir.exists():
        heldout = load_dir(heldout_dir)
        candidates = pool.shuffle(seed=cfg.prompts.shuffle_seed)
        if cfg.prompts.limit is not None:
            candidates = candidates.select(range(min(cfg.prompts.limit, len(candidates))))
    else:
        candidates, heldout = split_prompts(pool, cfg.prompts)
        save_atomic(heldout, heldout_dir)
    exclude = ledger.seen() | set(_hashes(heldout))
    fresh = [i for i, h in enumerate(_hashes(candidates)) if h not in exclude]
    if cfg.nightly.max_prompts is not None:
        fresh = fresh[: cfg.nightly.max_prompts]
    log.info(
        "nightly %s: %d prompts in the source, %d held out, %d new tonight",
        night_dir.name,
        len(pool),
        len(heldout),
        len(fresh),
    )
    return candidates.select(fresh), heldout


def _hashes(prompts: Dataset) -> list[str]:
    references = (
        prompts["reference"] if "reference" in prompts.column_names else [None] * len(prompts)
    )
    return [prompt_hash(p, r) for p, r in zip(prompts["prompt"], references, strict=True)]


def _publish(root: Path, night: str, night_dir: Path, prompts: Dataset, ledger: Ledger) -> dict:
    """Append the night's preferences as a new cumulative version, then record it and the
    night's prompts as seen in one transaction. A crash before the transaction leaves an
    unrecorded version folder that the resumed night simply writes again."""
    tonight = load_dir(RunDir(night_dir).output("aggregate"))
    tonight = tonight.add_column("night", [night] * len(tonight))
    latest = ledger.latest()
    if latest is None:
        combined, version = tonight, 1
    elif len(tonight) == 0:
        combined, version = None, latest["version"]
    else:
        previous = load_dir(root / "preferences" / _version_name(latest["version"]))
        combined, version = _append(previous, tonight, night), latest["version"] + 1
    if combined is not None:
        target = root / "preferences" / _version_name(version)
        save_atomic(combined, target)
        (target / "version.json").write_text(
            json.dumps({"version": version, "night": night, "rows": len(combined)}, indent=2)
        )
    record = {
        "version": version,
        "night": night,
        "rows": len(combined) if combined is not None else latest["rows"],
        "added": len(tonight),
    }
    # a prompt is seen only once every pair of it has complete evidence; the rest come back
    incomplete = incomplete_prompt_ids(load_dir(RunDir(night_dir).output("judge")))
    done = [i for i, pid in enumerate(prompts["prompt_id"]) if pid not in incomplete]
    if incomplete:
        log.info(
            "nightly %s: %d prompts have pairs without complete judgments; they come back "
            "on a later night",
            night,
            len(set(prompts["prompt_id"]) & incomplete),
        )
    seen = prompts.select(done)
    ledger.commit(record, _hashes(seen), list(seen["prompt_id"]))
    log.info(
        "nightly %s: %d new preferences; cumulative version %d has %d",
        night,
        record["added"],
        version,
        record["rows"],
        extra={"event": "published", **record},
    )
    return record


def _append(previous: Dataset, tonight: Dataset, night: str) -> Dataset:
    missing = [c for c in previous.column_names if c not in tonight.column_names]
    if missing:
        raise ConfigError(
            f"nightly {night}: tonight's preferences lack column(s) {', '.join(missing)} that "
            "earlier nights have; did the aggregate config change? Start a new pipeline name "
            "for a new schema"
        )
    return concatenate_datasets(
        [previous, tonight.select_columns(previous.column_names).cast(previous.features)]
    )


def latest_preferences(root: Path) -> Path | None:
    """The newest cumulative preference dataset (``datasets.load_from_disk`` it), if any."""
    if not (root / "ledger.sqlite").exists():
        return None
    ledger = Ledger(root / "ledger.sqlite")
    try:
        latest = ledger.latest()
    finally:
        ledger.close()
    return root / "preferences" / _version_name(latest["version"]) if latest else None


def _version_name(version: int) -> str:
    return f"v{version:04d}"


def _remaining_budget(max_cost_usd: float | None, night_dir: Path) -> float | None:
    """The night's budget less what earlier invocations of the same night spent."""
    if max_cost_usd is None:
        return None
    night = RunDir(night_dir)
    spent = (run_cost(night.read_manifest()) or 0.0) if night.has_manifest() else 0.0
    return max(0.0, max_cost_usd - spent)


def _parse_date(value: str | None) -> str:
    if value is None:
        return Date.today().isoformat()
    try:
        return Date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"--date {value!r}: expected YYYY-MM-DD") from None


class Ledger:
    """Seen prompts and published versions, in SQLite so a night commits atomically."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS seen (
                prompt_hash TEXT PRIMARY KEY, prompt_id TEXT, night TEXT);
            CREATE TABLE IF NOT EXISTS versions (
                night TEXT PRIMARY KEY, version INTEGER, rows INTEGER, added INTEGER,
                created_at TEXT DEFAULT CURRENT_TIMESTAMP);
            """
        )

    def close(self) -> None:
        self._db.close()

    def seen(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT prompt_hash FROM seen")}

    def version_of(self, night: str) -> dict | None:
        return self._one("SELECT version, night, rows, added FROM versions WHERE night = ?", night)

    def latest(self) -> dict | None:
        return self._one(
            "SELECT version, night, rows, added FROM versions ORDER BY version DESC, night DESC"
        )

    def nights(self) -> list[dict]:
        rows = self._db.execute(
            "SELECT version, night, rows, added, created_at FROM versions ORDER BY night"
        )
        return [dict(r) for r in rows]

    def commit(self, record: dict, hashes: list[str], prompt_ids: list[str]) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO versions (night, version, rows, added) VALUES (?, ?, ?, ?)",
                (record["night"], record["version"], record["rows"], record["added"]),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO seen (prompt_hash, prompt_id, night) VALUES (?, ?, ?)",
                [(h, i, record["night"]) for h, i in zip(hashes, prompt_ids, strict=True)],
            )

    def _one(self, sql: str, *args: Any) -> dict | None:
        row = self._db.execute(sql, args).fetchone()
        return dict(row) if row else None
