"""Measure what LLM judges are known to get wrong, and correct what can be corrected.

Per judge: how often the first-shown answer wins, how often the verdict survives swapping
the order, how often the longer answer wins and how strongly length drives the verdict
(a logistic slope on the standardised length difference). Across a panel: Cohen's kappa
per pair of judges and Krippendorff's alpha over all of them.
"""

from __future__ import annotations

import itertools

import krippendorff
import numpy as np
import pandas as pd

_EPS = 1e-6


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Logistic regression with an intercept on soft labels ``y`` in [0, 1] (Newton steps);
    returns ``[intercept, *slopes]``."""
    design = np.column_stack([np.ones(len(y)), np.asarray(x, dtype=float).reshape(len(y), -1)])
    w = np.zeros(design.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        grad = design.T @ (p - y) + l2 * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def length_difference(frame: pd.DataFrame) -> np.ndarray:
    """(len(a) - len(b)) in characters, scaled by its standard deviation."""
    diff = (frame["response_a"].str.len() - frame["response_b"].str.len()).to_numpy(float)
    scale = diff.std()
    return diff / scale if scale > 0 else diff


def length_corrected(valid: pd.DataFrame) -> np.ndarray:
    """P(a wins) with the fitted length term taken out of its logit."""
    x = length_difference(valid)
    p = valid["p_a"].to_numpy(float).clip(_EPS, 1 - _EPS)
    slope = fit_logistic(x, p)[1]
    logit = np.log(p / (1 - p)) - slope * x
    return 1.0 / (1.0 + np.exp(-logit))


def judge_report(frame: pd.DataFrame) -> dict:
    """Bias and agreement figures from a judgments table (the judge stage's output)."""
    valid = frame[(frame["status"] == "ok") & frame["p_a"].notna()]
    report: dict = {"judges": {}}
    for name, rows in valid.groupby("judge"):
        entry: dict = {"judgments": int((frame["judge"] == name).sum()), "valid": len(rows)}
        shown = rows["p_first"].dropna()  # pairwise judgments (pointwise ones have none)
        if len(shown):
            entry["first_position_win_rate"] = _round((shown > 0.5).mean())
        orders = rows.pivot_table(index="pair_id", columns="order", values="p_a")
        if {"ab", "ba"} <= set(orders.columns):
            both = orders.dropna(subset=["ab", "ba"])
            if len(both):
                entry["position_consistency"] = _round(
                    ((both["ab"] > 0.5) == (both["ba"] > 0.5)).mean()
                )
        diff = rows["response_a"].str.len() - rows["response_b"].str.len()
        decided = rows[(diff != 0) & (rows["p_a"] != 0.5)]
        if len(decided):
            longer_won = (decided["p_a"] > 0.5) == (diff[decided.index] > 0)
            entry["longer_win_rate"] = _round(longer_won.mean())
            slope = fit_logistic(length_difference(rows), rows["p_a"].to_numpy(float))[1]
            entry["length_slope"] = _round(slope)
        report["judges"][str(name)] = entry
    if valid["judge"].nunique() > 1:
        report["agreement"] = agreement(valid)
    return report


def agreement(valid: pd.DataFrame) -> dict:
    """Agreement between judges on each pair's hard label (its mean P(a wins) over orders)."""
    labels = (valid.groupby(["pair_id", "judge"])["p_a"].mean() > 0.5).astype(float).unstack()
    kappas = {}
    for a, b in itertools.combinations(labels.columns, 2):
        both = labels[[a, b]].dropna()
        kappas[f"{a}~{b}"] = _round(cohen_kappa(both[a].to_numpy(), both[b].to_numpy()))
    alpha = (
        krippendorff.alpha(reliability_data=labels.T.to_numpy(), level_of_measurement="nominal")
        if len(labels) > 1
        else np.nan
    )
    return {"cohen_kappa": kappas, "krippendorff_alpha": _round(alpha)}


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) == 0:
        return float("nan")
    observed = np.mean(a == b)
    expected = sum(np.mean(a == v) * np.mean(b == v) for v in np.union1d(a, b))
    return 1.0 if expected == 1.0 else float((observed - expected) / (1.0 - expected))


def _round(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)
