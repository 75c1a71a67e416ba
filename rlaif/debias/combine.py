"""From many judgments to one verdict per pair, as pure statistics over a table of judgment rows
(a ``pyarrow`` table with the judge stage's columns): each calibrated judge's P(a wins) mapped
through its calibration, a pair's judgments combined (a weighted mean or majority vote, with
length correction), and a prompt's best answer against its worst by Bradley-Terry. The
aggregate stage and ``rlaif judge-eval`` both use them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rlaif.config import AggregateConfig
from rlaif.debias import bradley_terry
from rlaif.debias.bias import length_corrected
from rlaif.debias.calibration import Calibration
from rlaif.judging.schema import PAIR_COLUMNS, PROVENANCE


def is_valid(table: pa.Table) -> np.ndarray:
    p_a = table["p_a"].to_numpy(zero_copy_only=False).astype(float)
    return (table["status"].to_numpy(zero_copy_only=False) == "ok") & ~np.isnan(p_a)


def complete_groups(table: pa.Table, by: str) -> np.ndarray:
    """Per judgment row: whether every row of its group (pair or prompt) is valid."""
    codes, _ = pd.factorize(table[by].to_numpy(zero_copy_only=False), sort=False)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    invalid = np.bincount(codes, (~is_valid(table)).astype(float), n_groups)
    return invalid[codes] == 0


def calibrated(table: pa.Table, calibrations: dict[str, Calibration]) -> pa.Table:
    """``p_a`` of each calibrated judge's pairwise rows mapped through its calibration (which
    is fitted on P(first), so the row's order decides which side it reads)."""
    p_a = table["p_a"].to_numpy(zero_copy_only=False).astype(float)
    judge = table["judge"].to_numpy(zero_copy_only=False)
    order = table["order"].to_numpy(zero_copy_only=False)
    for name, cal in calibrations.items():
        for shown, flip in (("ab", False), ("ba", True)):
            rows = (judge == name) & (order == shown) & ~np.isnan(p_a)
            first = 1 - p_a[rows] if flip else p_a[rows]
            p_a[rows] = 1 - cal.first(first) if flip else cal.first(first)
    return table.set_column(table.schema.get_field_index("p_a"), "p_a", pa.array(p_a))


def combine(
    table: pa.Table, cfg: AggregateConfig, weights: dict[str, float] | None = None
) -> pa.Table:
    """One row per pair: its texts, ``p_a`` (NaN without a valid judgment), ``tie``,
    ``n_judgments`` and provenance lists. ``weights`` (judge name -> weight) makes ``p_a``
    a weighted mean; votes and ties count every judge once."""
    codes, _ = pd.factorize(table["pair_id"].to_numpy(zero_copy_only=False), sort=False)
    n_pairs = int(codes.max()) + 1 if len(codes) else 0
    first = np.full(n_pairs, len(codes), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(codes)))
    p_a = table["p_a"].to_numpy(zero_copy_only=False).astype(float)
    valid = is_valid(table)
    if cfg.length_correction and valid.any():
        frame = table.filter(pa.array(valid)).select(["response_a", "response_b", "p_a"])
        p_a[valid] = length_corrected(frame.to_pandas())
    vcodes, vp = codes[valid], p_a[valid]
    counts = np.bincount(vcodes, minlength=n_pairs)
    w = np.ones(len(vp))
    if weights is not None:
        judges = table["judge"].to_numpy(zero_copy_only=False)[valid]
        w = np.array([weights.get(j, 1.0) for j in judges], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_mean = np.bincount(vcodes, w * vp, n_pairs) / np.bincount(vcodes, w, n_pairs)
        decided = vp != 0.5
        votes = np.bincount(vcodes[decided], minlength=n_pairs)
        wins = np.bincount(vcodes[decided], (vp[decided] > 0.5).astype(float), n_pairs)
        share = np.where(votes > 0, wins / votes, 0.5)
    combined = p_mean if cfg.method == "mean" else np.where(counts > 0, share, np.nan)
    out = table.select(PAIR_COLUMNS).take(pa.array(first))
    out = out.append_column("p_a", pa.array(combined))
    out = out.append_column("tie", pa.array((votes == 0) | ((wins > 0) & (wins < votes))))
    out = out.append_column("n_judgments", pa.array(counts))
    out = out.append_column("complete", pa.array(counts == np.bincount(codes, minlength=n_pairs)))
    valid_rows = table.filter(pa.array(valid))
    for name, column in PROVENANCE.items():
        out = out.append_column(name, _ragged(vcodes, valid_rows[column], n_pairs, unique=True))
    return out.append_column("judgment_keys", _ragged(vcodes, valid_rows["key"], n_pairs))


def best_vs_worst(table: pa.Table, pairs: pa.Table) -> pa.Table:
    """Per prompt, the Bradley-Terry best response against the worst, with the model's
    P(best beats worst) as the soft label; provenance is every judgment of the prompt."""
    judged = pairs.filter(pc.invert(pc.is_nan(pairs["p_a"])))
    frame = judged.select(["prompt_id", "index_a", "index_b", "p_a"]).to_pandas()
    prompt_codes, prompt_ids = pd.factorize(frame["prompt_id"], sort=False)
    width = int(max(frame["index_a"].max(), frame["index_b"].max()) + 1) if len(frame) else 1
    item_a = prompt_codes * width + frame["index_a"].to_numpy()
    item_b = prompt_codes * width + frame["index_b"].to_numpy()
    n_items = len(prompt_ids) * width
    scores = bradley_terry.fit(item_a, item_b, frame["p_a"].to_numpy(), n_items)
    seen = np.zeros(n_items, dtype=bool)
    seen[item_a] = seen[item_b] = True
    grid = np.where(seen, scores, np.nan).reshape(len(prompt_ids), width)
    best, worst = np.nanargmax(grid, axis=1), np.nanargmin(grid, axis=1)
    rows = np.flatnonzero(best != worst)
    # one judged pair row per (prompt, response) gives the response's text
    text_of = {}
    for side in ("a", "b"):
        for row, item in enumerate(prompt_codes * width + frame[f"index_{side}"].to_numpy()):
            text_of.setdefault(item, (row, side))
    responses = judged.select(["response_a", "response_b"]).to_pydict()

    def text(item: int) -> str:
        row, side = text_of[item]
        return responses[f"response_{side}"][row]

    first_row = pd.Series(np.arange(len(frame))).groupby(prompt_codes).first().to_numpy()
    valid = is_valid(table)
    # every valid judgment of a prompt backs its row: map judgments onto the prompt codes
    remap = pd.Series(np.arange(len(prompt_ids)), index=prompt_ids)
    prompt_of_row = remap.reindex(table["prompt_id"].to_numpy(zero_copy_only=False)).to_numpy()
    keep_rows = valid & ~np.isnan(prompt_of_row)
    gcodes = prompt_of_row[keep_rows].astype(np.int64)
    valid_rows = table.filter(pa.array(keep_rows))
    n = len(prompt_ids)
    known = ~np.isnan(prompt_of_row)
    invalid = np.bincount(prompt_of_row[known].astype(np.int64), (~valid[known]).astype(float), n)
    columns = {
        "pair_id": [f"{prompt_ids[r]}:{best[r]}-{worst[r]}" for r in rows],
        "prompt_id": [str(prompt_ids[r]) for r in rows],
        "prompt": judged["prompt"].take(pa.array(first_row[rows])).combine_chunks(),
        "response_a": [text(r * width + best[r]) for r in rows],
        "response_b": [text(r * width + worst[r]) for r in rows],
        "p_a": bradley_terry.win_probability(grid[rows, best[rows]], grid[rows, worst[rows]]),
        "tie": np.zeros(len(rows), dtype=bool),
        "n_judgments": np.bincount(gcodes, minlength=n)[rows],
        "complete": invalid[rows] == 0,
    }
    out = pa.table(columns)
    for name, column in PROVENANCE.items():
        out = out.append_column(
            name, _ragged(gcodes, valid_rows[column], n, unique=True).take(pa.array(rows))
        )
    keys = _ragged(gcodes, valid_rows["key"], n).take(pa.array(rows))
    return out.append_column("judgment_keys", keys)


def _ragged(
    groups: np.ndarray, values: pa.ChunkedArray | pa.Array, n_groups: int, unique: bool = False
) -> pa.ListArray:
    """A list column: row g holds the values whose group is g (distinct, if ``unique``)."""
    values = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
    if unique and len(values):
        codes, names = pd.factorize(values, sort=True)
        combined = np.unique(groups * len(names) + codes)
        groups, values = combined // len(names), names[combined % len(names)]
    order = np.argsort(groups, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=n_groups))])
    flat = pa.array(np.asarray(values, dtype=object)[order], type=pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), flat)
