"""From a run directory to PNGs: each function draws one plot if its data exists, else None."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rlaif.debias.bias import cohen_kappa
from rlaif.report import plots, run_data
from rlaif.run.run_dir import RunDir

log = logging.getLogger(__name__)


def write_plots(run_dir: Path) -> list[Path]:
    """Training curves, win rate and response-length drift into ``evaluation/plots/``; the
    evaluate stage calls this last. Plots whose data is missing are skipped."""
    run_dir = Path(run_dir)
    out_dir = RunDir(run_dir).output("evaluate") / "plots"
    manifest = run_data.manifest(run_dir)
    drawn = [
        training_plot(run_dir, out_dir),
        monitor_plot(run_dir, out_dir),
        win_rate_plot(run_data.evaluation_summary(run_dir, manifest), out_dir),
        length_drift_plot(run_data.evaluation_rows(run_dir), out_dir),
    ]
    paths = [p for p in drawn if p is not None]
    log.info("plots: wrote %s", ", ".join(str(p) for p in paths) or "nothing (no data yet)")
    return paths


def training_plot(run_dir: Path, out_dir: Path) -> Path | None:
    rows = run_data.training_log(run_dir)
    if not rows:
        return None
    steps, series = run_data.training_series(rows)
    if not series:
        return None
    return plots.training_curves(steps, series, out_dir / "training_curves.png")


def monitor_plot(run_dir: Path, out_dir: Path) -> Path | None:
    checks = run_data.monitor_checks(run_dir)
    if not checks:
        return None
    series = {
        title: [c.get(key) for c in checks]
        for key, title in run_data.MONITOR_SERIES.items()
        if any(c.get(key) is not None for c in checks)
    }
    steps = [c["step"] for c in checks]
    return plots.training_curves(steps, series, out_dir / "monitor_curves.png")


def reward_plot(folder: Path, out_dir: Path) -> Path | None:
    """The reward's components per step (``reward_log.jsonl`` in ``folder``)."""
    entries = run_data.reward_log(folder)
    if not entries:
        return None
    steps, series = run_data.reward_series(entries)
    return plots.training_curves(steps, series, out_dir / "reward_components.png")


def win_rate_plot(summary: dict | None, out_dir: Path) -> Path | None:
    if not summary or summary.get("win_rate") is None:
        return None
    return plots.win_rate(summary, out_dir / "win_rate.png")


def length_drift_plot(rows: pd.DataFrame | None, out_dir: Path) -> Path | None:
    if rows is None or len(rows) == 0:
        return None
    return plots.length_drift(
        rows["policy_response"].fillna("").str.len().tolist(),
        rows["reference_response"].fillna("").str.len().tolist(),
        out_dir / "length_drift.png",
    )


def position_bias_plot(report: dict | None, out_dir: Path) -> Path | None:
    judges = (report or {}).get("judges") or {}
    if not any(
        "first_position_win_rate" in j or "position_consistency" in j for j in judges.values()
    ):
        return None
    return plots.position_bias(judges, out_dir / "position_bias.png")


def agreement_plot(
    report: dict | None, judgments: pd.DataFrame | None, out_dir: Path
) -> tuple[Path | None, float | None]:
    """Pairwise Cohen's kappa when there are several judges; with one, the judge against
    itself across the two orders (returned with that self-agreement kappa)."""
    kappas = ((report or {}).get("agreement") or {}).get("cohen_kappa")
    if kappas:
        return plots.judge_agreement(kappas, out_dir / "judge_agreement.png"), None
    orders = _both_orders(judgments)
    if orders is None or orders["judge"].nunique() != 1:
        return None, None
    judge = str(orders["judge"].iloc[0])
    first, second = orders["ab"].to_numpy(float), orders["ba"].to_numpy(float)
    kappa = cohen_kappa(first > 0.5, second > 0.5)
    path = plots.order_agreement(first, second, judge, out_dir / "judge_agreement.png")
    return path, None if np.isnan(kappa) else round(kappa, 4)


def length_relation_plot(judgments: pd.DataFrame | None, out_dir: Path) -> Path | None:
    valid = _valid(judgments)
    if valid is None:
        return None
    by_judge = {}
    for name, rows in valid.groupby("judge"):
        diff = rows["response_a"].str.len() - rows["response_b"].str.len()
        by_judge[str(name)] = (diff.tolist(), rows["p_a"].tolist())
    return plots.length_relation(by_judge, out_dir / "length_relation.png")


def cost_plot(nights: list[tuple[str, float]] | None, out_dir: Path) -> Path | None:
    if not nights:
        return None
    dates, costs = zip(*nights, strict=True)
    return plots.cost_per_night(list(dates), list(costs), out_dir / "cost_per_night.png")


def _valid(judgments: pd.DataFrame | None) -> pd.DataFrame | None:
    if judgments is None or not {"status", "p_a", "judge"} <= set(judgments.columns):
        return None
    valid = judgments[(judgments["status"] == "ok") & judgments["p_a"].notna()]
    return valid if len(valid) else None


def _both_orders(judgments: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per (judge, pair) judged in both orders, with P(a wins) per order."""
    valid = _valid(judgments)
    if valid is None or not {"order", "pair_id"} <= set(valid.columns):
        return None
    table = valid.pivot_table(index=["judge", "pair_id"], columns="order", values="p_a")
    if not {"ab", "ba"} <= set(table.columns):
        return None
    table = table.dropna(subset=["ab", "ba"]).reset_index()
    return table if len(table) else None
