"""Adaptive orders: each pair shown once, the second order asked only where the first answer
is unsure.

Both orders cancel a judge's position bias at twice the calls, yet most answers are clear in
either order. A seeded sample of pairs is asked in both orders first, to measure the judge's
position bias (its mean P(first wins) over both orders, minus 0.5). Every other pair is shown
once, in a seeded random order; a first answer is unsure when its P(first wins) less that bias
lies within ``threshold`` of 0.5, and only those pairs are asked again: in the other order, or
of the judge named by ``escalate_to``. The same rules choose the rows offline from a table
judged in both orders, so calls saved and accuracy kept can be measured where the truth is
known (``rlaif judge-eval``, ``benchmarks/adaptive_orders.py``).
"""

from __future__ import annotations

import math

import pandas as pd

from rlaif.hashing import stable_hash

MIN_BIAS_PAIRS = 16
"""The bias sample has at least this many pairs (or all of them): a bias measured on two or
three pairs would move every decision by its noise."""


def first_order(pair_id: str, seed: int) -> str:
    """The seeded random order a pair is shown in first: ``ab`` or ``ba``."""
    return "ab" if int(stable_hash([seed, pair_id])[0], 16) % 2 else "ba"


def other(order: str) -> str:
    return "ba" if order == "ab" else "ab"


def bias_sample(pair_ids: list[str], share: float, seed: int) -> set[str]:
    """The pairs asked in both orders up front: a seeded ``share`` of them, at least
    :data:`MIN_BIAS_PAIRS` (none when ``share`` is 0: the bias is then taken as 0)."""
    if share <= 0:
        return set()
    k = min(len(pair_ids), max(math.ceil(share * len(pair_ids)), MIN_BIAS_PAIRS))
    return set(sorted(pair_ids, key=lambda p: stable_hash([seed, "bias", p]))[:k])


def position_bias(p_first: dict[str, dict[str, float]]) -> float:
    """Mean P(first wins) over the pairs answered in both orders, minus 0.5 (0 without any)."""
    both = [(got["ab"] + got["ba"]) / 2 for got in p_first.values() if {"ab", "ba"} <= set(got)]
    return sum(both) / len(both) - 0.5 if both else 0.0


def unsure_pairs(
    answers: dict[str, dict[str, float]], sample: set[str], threshold: float, seed: int
) -> tuple[float, set[str]]:
    """One judge's position bias, measured on the ``sample``, and the pairs outside it whose
    first answer is unsure, given its ``answers`` (pair -> order -> P(first wins)): the one
    rule the stage and :func:`select` both apply."""
    bias = position_bias({pid: answers.get(pid, {}) for pid in sample})
    out = set()
    for pid, got in answers.items():
        p = got.get(first_order(pid, seed))
        if pid not in sample and p is not None and abs(p - bias - 0.5) < threshold:
            out.add(pid)
    return bias, out


def select(
    judgments: pd.DataFrame,
    *,
    threshold: float,
    bias_share: float,
    seed: int = 0,
    escalate_to: str | None = None,
) -> pd.DataFrame:
    """The rows an adaptive run would have asked, from ``judgments`` judged in both orders
    (columns ``pair_id``, ``judge``, ``order``, ``p_first``). With ``escalate_to``, an unsure
    pair takes that judge's row in the other order instead of its own judge's."""
    keep: list[pd.DataFrame] = []
    escalated: set[tuple[str, str]] = set()
    for name, rows in judgments.groupby("judge", sort=True):
        if name == escalate_to:
            continue
        pair_ids = sorted(set(rows["pair_id"]))
        sample = bias_sample(pair_ids, bias_share, seed)
        by_pair: dict[str, dict[str, float]] = {}
        for pid, order, p in zip(rows["pair_id"], rows["order"], rows["p_first"], strict=True):
            if p is not None and not pd.isna(p):
                by_pair.setdefault(pid, {})[order] = float(p)
        _, again = unsure_pairs(by_pair, sample, threshold, seed)
        wanted = {(pid, first_order(pid, seed)) for pid in pair_ids}
        wanted |= {(pid, other(first_order(pid, seed))) for pid in sample}
        second = {(pid, other(first_order(pid, seed))) for pid in again}
        if escalate_to is None:
            wanted |= second
        else:
            escalated |= second
        keep.append(_rows_in(rows, wanted))
    if escalate_to is not None:
        keep.append(_rows_in(judgments[judgments["judge"] == escalate_to], escalated))
    return pd.concat(keep, ignore_index=True)


def _rows_in(rows: pd.DataFrame, items: set[tuple[str, str]]) -> pd.DataFrame:
    pairs = zip(rows["pair_id"], rows["order"], strict=True)
    return rows[[item in items for item in pairs]]


def unsure_lists(rows: list[dict], sample: set[str], threshold: float) -> tuple[float, set[str]]:
    """A listwise judge's first-place bias, measured on the ``sample`` prompts (shown in every
    order), and the other prompts whose first list left a pair unsure: a pair's P(shown first
    wins) less that bias within ``threshold`` of 0.5. ``rows``: pair rows (``prompt_id``,
    ``key`` of the call, ``pair_id``, ``order``, ``p_first``) in the order asked, each
    prompt's first call first."""
    first_call: dict[str, str] = {}
    both: dict[str, dict[str, float]] = {}
    firsts: dict[str, list[float]] = {}
    for row in rows:
        prompt = str(row["prompt_id"])
        first_call.setdefault(prompt, row["key"])
        p = row["p_first"]
        if p is None:
            continue
        if prompt in sample:
            both.setdefault(row["pair_id"], {})[row["order"]] = p
        elif row["key"] == first_call[prompt]:
            firsts.setdefault(prompt, []).append(p)
    bias = position_bias(both)
    unsure = {
        prompt for prompt, ps in firsts.items() if any(abs(p - bias - 0.5) < threshold for p in ps)
    }
    return bias, unsure


def select_lists(
    judgments: pd.DataFrame, *, threshold: float, bias_share: float, seed: int = 0
) -> pd.DataFrame:
    """The rows an adaptive run of a listwise judge would have asked, from ``judgments`` of
    every order shown (rows in the order asked, with ``prompt_id``, ``key``, ``pair_id``,
    ``order``, ``p_first``): the bias sample's prompts whole, the others' first call, and
    the unsure ones' other calls."""
    prompts = [str(p) for p in dict.fromkeys(judgments["prompt_id"])]
    sample = bias_sample(prompts, bias_share, seed)
    rows = judgments.to_dict("records")
    _, unsure = unsure_lists(rows, sample, threshold)
    first_call = judgments.groupby("prompt_id", sort=False)["key"].first()
    keep = [
        str(r["prompt_id"]) in sample | unsure or r["key"] == first_call[r["prompt_id"]]
        for r in rows
    ]
    return judgments[keep]
