"""On-policy rounds (``rounds:``): each round samples from the policy the round before it
trained, judges, and trains from that policy, the SFT model staying DPO's reference.

``<run_dir>/`` holds ``round-1/``, ``round-2/``...: each an ordinary run directory
(resumable, locked, its manifest naming the policy it sampled and started training from),
and ``rounds.json``: the chain, so a model is traceable to every round's data, with each
round's evaluation (against the SFT model and against the round before). A re-run resumes
where the chain stopped; completed rounds are skipped stage by stage, as any run is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets

from rlaif.hashing import stable_hash
from rlaif.run.datasets_io import load_dir, save_atomic
from rlaif.run.locking import RunLock
from rlaif.run.run_dir import CHAIN_FILE, RunDir, run_cost
from rlaif.run.runner import Pipeline, RunResult
from rlaif.run.stage_table import DATA_STAGES, TRAIN_STAGES
from rlaif.run.start_policy import StartPolicy

log = logging.getLogger("rlaif")


@dataclass
class RoundsResult:
    run_dir: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """One entry per finished round, as ``rounds.json`` has them."""
    stopped: str | None = None
    """Why the chain ended before ``rounds.count``, if it did."""
    last: RunResult | None = None
    """The last round's run: a partial one says why the chain waits."""


def run_rounds(pipeline: Pipeline, run_dir: Path | None = None) -> RoundsResult:
    """Run (or resume) the rounds; ``judge.max_cost_usd`` caps this invocation's spending
    across them."""
    root = Path(run_dir or pipeline.default_run_dir())
    with RunLock(root / ".rounds.lock", what=f"rounds of pipeline '{pipeline.config.name}'"):
        return _chain(pipeline, root)


def _chain(pipeline: Pipeline, root: Path) -> RoundsResult:
    cfg = pipeline.config
    rounds = cfg.rounds
    assert rounds is not None
    result = RoundsResult(root)
    budget = cfg.judge.max_cost_usd
    start: StartPolicy | None = None
    to_beat = 0.5  # the monitor's win rate a round must beat: the SFT model against itself
    for index in range(1, rounds.count + 1):
        round_dir = root / f"round-{index}"
        info = {
            "index": index,
            "of": rounds.count,
            "sampled_from": str(start.path) if start else cfg.model,
            "reference": cfg.model if rounds.reference == "sft" or not start else str(start.path),
        }
        log.info("round %d of %d: sampling from %s", index, rounds.count, info["sampled_from"])
        run, budget = _spend(pipeline, budget, round_dir, DATA_STAGES, info, start)
        result.last = run
        if run.partial:
            return _save(result)
        replay = _replay(root, index, rounds.replay, cfg.train.seed)
        info["train_input"] = str(replay) if replay else None
        run, budget = _spend(pipeline, budget, round_dir, TRAIN_STAGES, info, start, replay)
        result.last = run
        if run.partial:
            return _save(result)
        entry = _entry(info, round_dir, run.evaluation or {})
        result.rounds.append(entry)
        _save(result)
        monitor = run.manifest["stages"]["train"].get("counts", {}).get("monitor") or {}
        if monitor.get("stopped") and index < rounds.count:
            result.stopped = (
                f"round {index}: train.monitor stopped training ({monitor['stopped']}); "
                f"the round keeps its step-{monitor['kept_step']} policy and the chain ends"
            )
            log.warning("rounds: stopping early: %s", result.stopped)
            break
        watched = monitor.get("kept_win_rate")
        gain = cfg.train.monitor.stop.min_round_gain if cfg.train.monitor else None
        beaten = watched is None or gain is None or watched > to_beat + gain
        if not beaten and index < rounds.count:
            result.stopped = (
                f"round {index}: the monitor judges' win rate against the SFT model is "
                f"{watched:.3f}, not above the "
                f"{'SFT model' if index == 1 else f'round {index - 1} policy'}'s "
                f"{to_beat:.3f} by more than train.monitor.stop.min_round_gain {gain}"
            )
            log.warning("rounds: stopping early: %s", result.stopped)
            break
        to_beat = watched if watched is not None else to_beat
        floor = rounds.stop_when.min_gain
        if floor is not None and index < rounds.count and entry["gain"] < floor:
            result.stopped = (
                f"round {index} gained {entry['gain']:.3f} over the "
                f"{'SFT model' if index == 1 else f'round {index - 1} policy'}, under "
                f"rounds.stop_when.min_gain {floor}"
            )
            log.warning("rounds: stopping early: %s", result.stopped)
            break
        start = StartPolicy.trained_by(round_dir, rounds.reference)
        assert start is not None, f"{round_dir}: its train stage completed without a policy"
    return _save(result)


def _spend(
    pipeline: Pipeline,
    budget: float | None,
    round_dir: Path,
    stages: list[str],
    info: dict[str, Any],
    start: StartPolicy | None,
    train_input: Path | None = None,
) -> tuple[RunResult, float | None]:
    """Run ``stages`` of a round within ``budget``; returns the run and the budget left."""
    before = _cost(round_dir)
    run = pipeline.run(
        stages,
        round_dir,
        extra={"round": info},
        budget_usd=budget,
        start=start,
        train_input=train_input,
    )
    left = None if budget is None else max(0.0, budget - (_cost(round_dir) - before))
    return run, left


def _cost(round_dir: Path) -> float:
    run = RunDir(round_dir)
    return (run_cost(run.read_manifest()) or 0.0) if run.has_manifest() else 0.0


def _replay(root: Path, index: int, share: float, seed: int) -> Path | None:
    """This round's preferences plus ``share`` as many drawn from earlier rounds', saved
    under a name that is their content's, so a changed share or input trains again."""
    if share == 0 or index == 1:
        return None
    rounds = [RunDir(root / f"round-{r}") for r in range(1, index + 1)]
    hashes = [r.read_manifest()["stages"]["aggregate"]["output_hash"] for r in rounds]
    target = rounds[-1].path / f"train_input-{stable_hash([share, seed, hashes])[:12]}"
    if target.exists():
        return target
    own = load_dir(rounds[-1].output("aggregate"))
    earlier = concatenate_datasets(
        [_like(load_dir(r.output("aggregate")), own) for r in rounds[:-1]]
    )
    drawn = earlier.shuffle(seed=seed + index).select(
        range(min(len(earlier), round(share * len(own))))
    )
    save_atomic(concatenate_datasets([own, drawn]), target)
    log.info(
        "round %d: training on %d own preferences and %d replayed", index, len(own), len(drawn)
    )
    return target


def _like(rows: Dataset, own: Dataset) -> Dataset:
    return rows.select_columns(own.column_names).cast(own.features)


def _entry(info: dict[str, Any], round_dir: Path, evaluation: dict[str, Any]) -> dict[str, Any]:
    """A round in ``rounds.json``: where its data and policy are, and how it did."""
    run = RunDir(round_dir)
    vs_previous = evaluation.get("vs_previous")
    head_to_head = vs_previous or evaluation  # round 1's "previous" is the SFT model
    return {
        **info,
        "run_dir": str(round_dir),
        "preferences": str(run.output("aggregate")),
        "policy": str(run.policy),
        "win_rate_vs_sft": evaluation.get("win_rate"),
        "ci_vs_sft": [evaluation.get("ci_low"), evaluation.get("ci_high")],
        "lc_win_rate_vs_sft": evaluation.get("lc_win_rate"),
        "kl_to_sft": evaluation.get("kl_to_sft"),
        "mean_chars": evaluation.get("mean_chars_policy"),
        "win_rate_vs_previous": vs_previous["win_rate"] if vs_previous else None,
        "ci_vs_previous": [vs_previous["ci_low"], vs_previous["ci_high"]] if vs_previous else None,
        "gain": round(float(head_to_head.get("win_rate", 0.5)) - 0.5, 4),
    }


def _save(result: RoundsResult) -> RoundsResult:
    (result.run_dir / CHAIN_FILE).write_text(
        json.dumps({"rounds": result.rounds, "stopped": result.stopped}, indent=2)
    )
    return result


def rounds_table(rounds: list[dict[str, Any]]) -> list[str]:
    """The chain as a Markdown table: win rates with intervals, KL and length by round."""
    lines = [
        "| round | vs SFT (95% CI) | LC vs SFT | vs previous round (95% CI) | KL to SFT | chars |",
        "|---|---|---|---|---|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['index']} | {_rate(r['win_rate_vs_sft'], r['ci_vs_sft'])} | "
            f"{_num(r['lc_win_rate_vs_sft'])} | "
            f"{_rate(r['win_rate_vs_previous'], r['ci_vs_previous'])} | "
            f"{_num(r['kl_to_sft'])} | {_num(r['mean_chars'], 0)} |"
        )
    return lines


def _rate(value: float | None, ci: list | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} ({ci[0]:.3f}-{ci[1]:.3f})" if ci and None not in ci else f"{value:.3f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
