"""Read what a run directory holds for the report; every reader returns None for what is absent.

A run may have stopped after any stage, trained with DPO or PPO, or judged for free, so each
piece is looked up on its own and its absence is an answer, not an error.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import load_from_disk

from rlaif.errors import ConfigError
from rlaif.run.run_dir import MANIFEST, RunDir, run_cost

log = logging.getLogger(__name__)

TRAIN_SERIES = {
    "dpo": {"loss": "DPO loss", "rewards/margins": "reward margin (chosen - rejected)"},
    "ppo": {"reward": "reward", "kl": "KL to SFT (nats)", "response_length": "response tokens"},
}
"""The training-log columns plotted for each kind of log (PPO logs have a ``reward``), with
their titles."""


def manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest; a ConfigError naming the file when it is absent or damaged."""
    return RunDir(run_dir).read_manifest()


def training_log(run_dir: Path) -> list[dict[str, Any]] | None:
    """One dict per logged step, from ``train/log`` or, failing that, the JSON logs."""
    train_dir = RunDir(run_dir).output("train")
    if (train_dir / "log" / "state.json").is_file():
        return load_from_disk(str(train_dir / "log")).to_list()
    for name in ("ppo_log.json", "log_history.json"):
        if (train_dir / name).is_file():
            return json.loads((train_dir / name).read_text())
    return None


def training_series(rows: list[dict[str, Any]]) -> tuple[list[float], dict[str, list]]:
    """Steps and the series worth plotting, by title (DPO: loss and reward margin; PPO: reward,
    KL, response length).

    Rows without any of those values (the trainer's closing summary row) are left out."""
    kind = "ppo" if any(r.get("reward") is not None for r in rows) else "dpo"
    columns = [c for c in TRAIN_SERIES[kind] if any(r.get(c) is not None for r in rows)]
    logged = [r for r in rows if any(r.get(c) is not None for c in columns)]
    steps = [r.get("step", i + 1) for i, r in enumerate(logged)]
    return steps, {TRAIN_SERIES[kind][c]: [r.get(c) for r in logged] for c in columns}


MONITOR_SERIES = {
    "reward": "training reward",
    "win_rate": "monitor win rate vs SFT",
    "kl": "KL to SFT (nats)",
    "length_ratio": "length ratio to SFT",
    "repetition": "repeated 3-grams",
    "attacks": "answers with a judge attack's mark",
    "staleness": "reused judgments' age (steps, max)",
}
"""The ``train.monitor`` measures plotted, with their titles."""


def monitor_checks(run_dir: Path) -> list[dict[str, Any]] | None:
    """The ``train.monitor`` checks (``train/monitor.jsonl``), one dict each."""
    path = RunDir(run_dir).output("train") / "monitor.jsonl"
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def reward_log(folder: Path) -> list[dict[str, Any]] | None:
    """Each reward call's account (``reward_log.jsonl``, and the ``reward_log.<pid>.jsonl`` of
    adapters in several processes) in ``folder``: a run's ``train/`` or a trainer's output
    folder. Calls that logged no step are numbered in the order they were written."""
    files = sorted(folder.glob("reward_log*.jsonl"))
    entries = [
        json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()
    ]
    if not entries:
        return None
    for n, entry in enumerate(entries):
        if entry.get("step") is None:
            entry["step"] = n
    return sorted(entries, key=lambda e: e["step"])


def reward_series(entries: list[dict[str, Any]]) -> tuple[list[float], dict[str, list]]:
    """Steps and, by title, the total and each component's mean, and how stale the reused
    judgments were (the most steps between an answer's judgment and its reuse)."""
    steps = [e["step"] for e in entries]
    series: dict[str, list] = {"total reward": [e.get("total", {}).get("mean") for e in entries]}
    names = list(dict.fromkeys(n for e in entries for n in e.get("components", {})))
    for name in names:
        series[f"reward/{name}"] = [
            e.get("components", {}).get(name, {}).get("mean") for e in entries
        ]
    stale = [
        max((j.get("staleness_max", 0) for j in e.get("judges", [])), default=0) for e in entries
    ]
    if any(stale):
        series["judgment staleness (steps, max)"] = stale
    return steps, series


def evaluation_summary(run_dir: Path, run_manifest: dict[str, Any]) -> dict[str, Any] | None:
    """``evaluation/summary.json``, else the manifest's copy."""
    path = RunDir(run_dir).evaluation_summary
    if path.is_file():
        return json.loads(path.read_text())
    return run_manifest.get("evaluation")


def evaluation_rows(run_dir: Path) -> pd.DataFrame | None:
    """The held-out comparisons: prompt, policy_response, reference_response, p_policy."""
    folder = RunDir(run_dir).output("evaluate")
    if not (folder / "state.json").is_file():
        return None
    return load_from_disk(str(folder)).to_pandas()


def length_drift(run_dir: Path) -> dict[str, Any]:
    """The evaluate stage's length drift (:func:`rlaif.stages.evaluate.length_drift`) of
    the held-out answers written in ``run_dir``."""
    from rlaif.stages.evaluate import length_drift as drift_of

    rows = evaluation_rows(run_dir)
    if rows is None:
        raise ConfigError(
            f"{RunDir(run_dir).output('evaluate')}: no evaluation dataset; "
            "run the evaluate stage first"
        )
    return drift_of(rows["policy_response"].tolist(), rows["reference_response"].tolist())


def judgments(run_dir: Path) -> pd.DataFrame | None:
    folder = RunDir(run_dir).output("judge")
    if not (folder / "state.json").is_file():
        return None
    return load_from_disk(str(folder)).to_pandas()


def judge_report(run_dir: Path, run_manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The aggregate stage's judge report (manifest, then ``preferences/judge_report.json``)."""
    if run_manifest.get("judge_report"):
        return run_manifest["judge_report"]
    path = RunDir(run_dir).output("aggregate") / "judge_report.json"
    return json.loads(path.read_text()) if path.is_file() else None


def judge_audit(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest ``rlaif judge-audit`` result beside this run: in the run directory, or in
    the pipeline's folder above it (where the audit writes by default)."""
    for folder in (run_dir, run_dir.parent):
        path = folder / "judge_audit.json"
        if path.is_file():
            return path, json.loads(path.read_text())
    return None


def reward_model_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = RunDir(run_dir).output("train") / "reward_model_metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def nightly_costs(run_dir: Path, run_manifest: dict[str, Any]) -> list[tuple[str, float]] | None:
    """(date, cost in USD) for every night beside this one (same parent folder, with a
    manifest), sorted by date; None when this run is not a nightly run."""
    if "nightly" not in run_manifest:
        return None
    nights = []
    for night in sorted(Path(run_dir).resolve().parent.iterdir()):
        path = night / MANIFEST
        if not path.is_file():
            continue
        try:
            other = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            log.warning("%s: corrupt manifest, left out of the cost per night (%s)", path, exc)
            continue
        date = (other.get("nightly") or {}).get("date") or night.name
        nights.append((str(date), run_cost(other) or 0.0))
    return sorted(nights)


def _mean(values: list[int]) -> float | None:
    return round(statistics.fmean(values), 1) if values else None


def _median(values: list[int]) -> float | None:
    return round(float(statistics.median(values)), 1) if values else None
