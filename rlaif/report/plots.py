"""One PNG per function, from plain lists and dicts, so each plot is testable without a run.

Figures are drawn on matplotlib's Agg canvas directly (no ``pyplot``): no display is needed, no
global backend is switched, and nothing is left open between calls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_DPI = 100
_POLICY, _REFERENCE, _NEUTRAL = "tab:blue", "tab:gray", "black"


def training_curves(
    steps: Sequence[float], series: Mapping[str, Sequence[float | None]], path: Path
) -> Path:
    """One panel per logged quantity (DPO: loss; PPO: reward, KL, response length) by step."""
    if not series:
        raise ValueError("training_curves: no series to plot")
    fig = _figure(width=4.2 * len(series), height=3.2, ncols=len(series))
    for ax, (name, values) in zip(fig.axes, series.items(), strict=True):
        points = [(s, v) for s, v in zip(steps, values, strict=True) if _finite(v)]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, color=_POLICY)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def win_rate(evaluation: Mapping[str, float | None], path: Path) -> Path:
    """Win rate against the SFT model with its 95% interval, and the length-controlled one."""
    fig = _figure(width=5.5, height=2.6)
    ax = fig.axes[0]
    rows = [
        ("win rate", evaluation["win_rate"], evaluation.get("ci_low"), evaluation.get("ci_high"))
    ]
    if _finite(evaluation.get("lc_win_rate")):
        rows.append(("length-controlled", evaluation["lc_win_rate"], None, None))
    ticks = []
    for y, (label, value, low, high) in enumerate(reversed(rows)):
        ax.barh(y, value, color=_POLICY if label == "win rate" else "tab:orange", height=0.5)
        ticks.append(f"{label}\n{value:.3f}")
        if _finite(low) and _finite(high):
            ax.errorbar(value, y, xerr=[[value - low], [high - value]], color=_NEUTRAL, capsize=6)
            ticks[-1] += f" ({low:.3f}-{high:.3f})"
    ax.set_yticks(range(len(rows)), ticks)
    ax.axvline(0.5, color=_NEUTRAL, linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(policy beats SFT); ties count half; dashed = no change")
    return _save(fig, path)


def length_drift(
    policy_lengths: Sequence[float], reference_lengths: Sequence[float], path: Path
) -> Path:
    """Histograms of answer length (characters) of the policy and of the SFT model."""
    fig = _figure(width=6, height=3.4)
    ax = fig.axes[0]
    both = [*policy_lengths, *reference_lengths]
    bins = np.histogram_bin_edges(both, bins=min(30, max(5, len(both) // 4))) if both else 10
    for label, lengths, color in (
        ("SFT", reference_lengths, _REFERENCE),
        ("policy", policy_lengths, _POLICY),
    ):
        if len(lengths):
            mean = float(np.mean(lengths))
            ax.hist(lengths, bins=bins, alpha=0.55, color=color, label=f"{label} (mean {mean:.0f})")
            ax.axvline(mean, color=color, linestyle="--")
    ax.set_xlabel("response length (characters)")
    ax.set_ylabel("held-out prompts")
    ax.legend()
    return _save(fig, path)


def position_bias(judges: Mapping[str, Mapping[str, float | None]], path: Path) -> Path:
    """Per judge: how often the first-shown answer wins, and how often a verdict survives the
    swap of the two answers."""
    keys = (
        ("first_position_win_rate", "first-position win rate"),
        ("position_consistency", "position consistency"),
    )
    names = list(judges)
    fig = _figure(width=max(5.0, 1.6 * len(names) + 2), height=3.4)
    ax = fig.axes[0]
    width = 0.38
    for i, (key, label) in enumerate(keys):
        xs = [n + (i - 0.5) * width for n in range(len(names))]
        values = [_or_nan(judges[name].get(key)) for name in names]
        bars = ax.bar(xs, values, width=width, label=label, color=("tab:red", "tab:green")[i])
        ax.bar_label(bars, labels=["n/a" if math.isnan(v) else f"{v:.2f}" for v in values])
    ax.axhline(0.5, color=_NEUTRAL, linestyle="--", linewidth=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
    ax.set_ylabel("share of judgments")
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    return _save(fig, path)


def judge_agreement(kappas: Mapping[str, float | None], path: Path) -> Path:
    """Cohen's kappa between every two judges (keys ``"a~b"``, as the judge report writes
    them) as a symmetric matrix."""
    names = sorted({name for pair in kappas for name in pair.split("~", 1)})
    if len(names) < 2:
        raise ValueError("judge_agreement: needs kappas between at least two judges")
    index = {name: i for i, name in enumerate(names)}
    matrix = np.eye(len(names))
    for pair, kappa in kappas.items():
        a, b = pair.split("~", 1)
        matrix[index[a], index[b]] = matrix[index[b], index[a]] = _or_nan(kappa)
    size = 1.1 * len(names) + 2.5
    fig = _figure(width=size + 1, height=size)
    ax = fig.axes[0]
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu")
    for (i, j), value in np.ndenumerate(matrix):
        text = "n/a" if math.isnan(value) else f"{value:.2f}"
        color = "white" if abs(value) > 0.5 else _NEUTRAL
        ax.text(j, i, text, ha="center", va="center", color=color)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_title("Cohen's kappa on each pair's verdict")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _save(fig, path)


def order_agreement(
    p_first_order: Sequence[float], p_second_order: Sequence[float], judge: str, path: Path
) -> Path:
    """A judge against itself: P(a wins) when a is shown first against P(a wins) when a is
    shown second, one point per pair; a consistent judge puts the points on the diagonal."""
    fig = _figure(width=4.6, height=4.4)
    ax = fig.axes[0]
    ax.scatter(p_first_order, p_second_order, s=14, alpha=0.5, color=_POLICY)
    ax.plot([0, 1], [0, 1], color=_NEUTRAL, linestyle="--", linewidth=1)
    ax.axhline(0.5, color=_REFERENCE, linewidth=0.5)
    ax.axvline(0.5, color=_REFERENCE, linewidth=0.5)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("P(a wins), a shown first")
    ax.set_ylabel("P(a wins), a shown second")
    ax.set_title(f"{judge}: same pair, both orders ({len(p_first_order)} pairs)")
    return _save(fig, path)


def length_relation(
    by_judge: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: Path, *, bins: int = 8
) -> Path:
    """Mean P(a wins) per bin of len(a) - len(b) in characters, one line per judge; bins hold
    about equally many judgments. A flat line at 0.5 means length does not sway the judge."""
    fig = _figure(width=6, height=3.6)
    ax = fig.axes[0]
    for name, (diffs, p_a) in by_judge.items():
        x, y = _binned_means(np.asarray(diffs, float), np.asarray(p_a, float), bins)
        ax.plot(x, y, marker="o", label=name)
    ax.axhline(0.5, color=_NEUTRAL, linestyle="--", linewidth=1)
    ax.axvline(0, color=_REFERENCE, linewidth=0.5)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("len(a) - len(b), characters (bin mean)")
    ax.set_ylabel("mean P(a wins)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def cost_per_night(dates: Sequence[str], costs: Sequence[float], path: Path) -> Path:
    """Judge spend (USD) per nightly run, by date."""
    fig = _figure(width=max(5.0, 0.45 * len(dates) + 2), height=3.2)
    ax = fig.axes[0]
    ax.bar(range(len(dates)), costs, color=_POLICY)
    ax.set_xticks(range(len(dates)), dates, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("USD")
    ax.set_title(f"cost per night (total ${sum(costs):.2f})")
    return _save(fig, path)


def _binned_means(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) == 0:
        return x, y
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max(len(edges) - 2, 0))
    groups = [which == b for b in np.unique(which)]
    return np.array([x[g].mean() for g in groups]), np.array([y[g].mean() for g in groups])


def _figure(*, width: float, height: float, ncols: int = 1) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(1, ncols)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _or_nan(value: float | None) -> float:
    return value if _finite(value) else math.nan
