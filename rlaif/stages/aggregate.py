"""Stage 4: one preference per pair (or per prompt) from all its judgments, in TRL's format.

A pair's judgments (both orders, every judge) combine into P(a wins): their mean, or the
share of hard votes. Averaging the two orders cancels a constant position bias; hard votes
that disagree make the pair a tie (the judge followed the position, or the judges split),
dropped or kept as a soft label. With many responses per prompt, a Bradley-Terry fit over
all of a prompt's comparisons scores every response, for ``best_vs_worst`` selection.

Everything is columnar (numpy group sums, Arrow list columns), so a million judgments
aggregate in seconds.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from datasets.table import InMemoryTable

from rlaif.chat import chat
from rlaif.config import AggregateConfig
from rlaif.debias import bradley_terry
from rlaif.debias.bias import judge_report, length_corrected
from rlaif.debias.calibration import Calibration, panel_calibrations
from rlaif.errors import RlaifError
from rlaif.judges.failures import failure_reason
from rlaif.judging.schema import PAIR_COLUMNS, PROVENANCE
from rlaif.judging.store import pair_key

if TYPE_CHECKING:
    from rlaif.run.context import Run

log = logging.getLogger(__name__)
_COLUMNS = [*PAIR_COLUMNS, "judge", "order", "status", "p_a", "key", "rubric_id", "rubric_hash"]
"""What aggregation reads of each judgment row."""


def step(run: Run) -> dict:
    """The stage in a run: the preferences, the judge report, and what was held back."""
    judgments = run.input("judge")
    human = None
    if run.cfg.aggregate.human_labels == "override":
        with run.store() as store:
            human = {k: row["label"] for k, row in store.human_labels().items()}
    out = aggregate(
        judgments,
        run.cfg.aggregate,
        system_prompt=run.cfg.sample.system_prompt,
        calibrations=panel_calibrations(run.cfg.judge, run.cfg.aggregate.judge_weights),
        human_labels=human,
    )
    held_back = held_back_pairs(judgments)
    if len(out) == 0:
        raise RlaifError(_nothing_published(judgments, held_back, run.cfg.aggregate, run.dir.logs))
    run.save("aggregate", out)
    report = judge_report(judgments.to_pandas())
    (run.dir.output("aggregate") / "judge_report.json").write_text(json.dumps(report, indent=2))
    run.manifest["judge_report"] = report
    counts = {
        "pairs": len(set(judgments["pair_id"])),
        "preferences": len(out),
        "ties_kept": sum(out["tie"]),
    }
    if held_back:
        counts["incomplete_pairs"] = held_back
    if held_back.get("unreadable") and run.cfg.aggregate.incomplete == "hold":
        reasons = Counter(
            e or s
            for s, e in zip(judgments["status"], judgments["error"], strict=True)
            if s == "invalid"
        )
        log.warning(
            "aggregate: %d pair(s) held back: a judge answered without a verdict that could be "
            "read, which asking again will not change (most common: %s). Fix the rubric, "
            "judge or checklist, or set aggregate.incomplete: publish to keep them marked "
            "complete=false",
            held_back["unreadable"],
            "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common(2)) or "unknown",
        )
    return counts


def _nothing_published(
    judgments: Dataset, held_back: dict[str, int], cfg: AggregateConfig, logs: Path
) -> str:
    """Why there is nothing to publish, with what to do about the actual cause."""
    pairs = len(set(judgments["pair_id"]))
    if sum(held_back.values()) == pairs:
        errors = Counter(
            failure_reason(e or "")
            for s, e in zip(judgments["status"], judgments["error"], strict=True)
            if s != "ok"
        )
        return (
            f"aggregate: none of the {pairs} pairs has a valid judgment in every order "
            f"({held_back}); what the judges answered: {dict(errors.most_common(5))}. Fix "
            "the judge (`rlaif status`, logs/run.log) and re-run: answers already stored "
            "are reused"
        )
    hint = (
        "try aggregate.ties=keep or a lower aggregate.min_margin"
        if cfg.ties == "drop"
        else "try a lower aggregate.min_margin, or a stronger judge"
    )
    return (
        f"aggregate: all {pairs} pairs were dropped (see {logs / 'run.log'} for why); with a "
        f"position-biased judge most pairs are ties: {hint}"
    )


def aggregate(
    judgments: Dataset,
    cfg: AggregateConfig,
    *,
    system_prompt: str | None = None,
    calibrations: dict[str, Calibration] | None = None,
    human_labels: dict[str, str] | None = None,
) -> Dataset:
    """``prompt``/``chosen``/``rejected`` (conversational; ``prompt`` starts with the system
    prompt the answers were sampled under, if any) plus ``p_chosen``, ``margin``, ``tie``,
    ``complete`` and the provenance of every judgment behind the row.

    A preference is published only from complete evidence: a pair lacking a valid judgment
    from any judge in any order it was asked (failed, not asked yet, or unreadable) is held
    back (with ``best_vs_worst``, its whole prompt), unless ``cfg.incomplete`` is
    ``publish``, which keeps it with ``complete`` false. A judge with a calibration has its
    probabilities mapped through it first; with ``cfg.judge_weights`` ``agreement`` its
    weight in the mean is the one the calibration measured. ``human_labels`` (pair key ->
    ``A``, ``B``, ``tie`` or ``flag``, see ``cfg.human_labels``) replace the judges'
    preference for the pairs they cover."""
    # through the arrow formatter, so a selected or filtered dataset is read as it appears
    table = judgments.select_columns(_COLUMNS).with_format("arrow")[:].combine_chunks()
    if calibrations:
        table = calibrated(table, calibrations)
    by = "prompt_id" if cfg.selection == "best_vs_worst" else "pair_id"
    complete_row = _complete_groups(table, by)
    held_back = held_back_pairs(judgments)
    if cfg.incomplete == "hold":
        table = table.filter(pa.array(complete_row))
    weights = (
        {name: c.weight() for name, c in (calibrations or {}).items()}
        if cfg.judge_weights == "agreement"
        else None
    )
    pairs = combine(table, cfg, weights)
    flagged = 0
    if human_labels:
        pairs, flagged = _with_human_labels(pairs, human_labels)
    if cfg.selection == "best_vs_worst":
        pairs = best_vs_worst(table, pairs)
    elif cfg.selection == "random_pairs":
        pairs = pairs.take(_random_per_group(pairs["prompt_id"], cfg.k, cfg.seed))
    p_a = pairs["p_a"].to_numpy(zero_copy_only=False)
    tie = pairs["tie"].to_numpy(zero_copy_only=False)
    judged = ~np.isnan(p_a)
    keep = judged & (~tie if cfg.ties == "drop" else True)
    margin = np.abs(2.0 * np.nan_to_num(p_a, nan=0.5) - 1.0)
    dropped = {
        "no_valid_judgment": int((~judged).sum()),
        "tie": int((judged & tie).sum()) if cfg.ties == "drop" else 0,
        "low_margin": int((keep & (margin < cfg.min_margin)).sum()),
        **({"flagged": flagged} if flagged else {}),
    }
    keep &= margin >= cfg.min_margin
    log.info(
        "aggregate: %d candidates -> %d preferences; dropped %s; incomplete pairs %s (%s)",
        len(pairs),
        int(keep.sum()),
        dropped,
        held_back or "none",
        "held back" if cfg.incomplete == "hold" else "published, complete=false",
    )
    return _to_dataset(pairs.filter(pa.array(keep)), system_prompt)


_HUMAN_P_A = {"A": 1.0, "B": 0.0, "tie": 0.5, "flag": float("nan")}


def _with_human_labels(pairs: pa.Table, labels: dict[str, str]) -> tuple[pa.Table, int]:
    """``pairs`` with ``p_a`` and ``tie`` taken from a person's label where the pair has one
    (a flagged pair gets no preference); also how many were flagged."""
    columns = pairs.select(["prompt", "response_a", "response_b"]).to_pydict()
    found = [
        labels.get(pair_key(p, a, b))
        for p, a, b in zip(
            columns["prompt"], columns["response_a"], columns["response_b"], strict=True
        )
    ]
    if not any(found):
        return pairs, 0
    p_a = pairs["p_a"].to_numpy(zero_copy_only=False).astype(float)
    tie = pairs["tie"].to_numpy(zero_copy_only=False).copy()
    for row, label in enumerate(found):
        if label is not None:
            p_a[row], tie[row] = _HUMAN_P_A[label], label == "tie"
    log.info("aggregate: %d pair(s) take a person's label", sum(f is not None for f in found))
    pairs = pairs.set_column(pairs.schema.get_field_index("p_a"), "p_a", pa.array(p_a))
    pairs = pairs.set_column(pairs.schema.get_field_index("tie"), "tie", pa.array(tie))
    return pairs, found.count("flag")


def held_back_pairs(judgments: Dataset) -> dict[str, int]:
    """Pairs without complete evidence, by why: ``failed`` (an error, a call the budget did
    not allow, an answer still in a provider batch: a later run may fill it in) or
    ``unreadable`` (the judge answered, but not with a verdict)."""
    table = judgments.select_columns(["pair_id", "status", "p_a"]).with_format("arrow")[:]
    frame = table.to_pandas()
    frame["valid"] = (frame["status"] == "ok") & frame["p_a"].notna()
    frame["retryable"] = frame["status"].isin(["error", "skipped", "pending"])
    per_pair = frame.groupby("pair_id", sort=False).agg(
        complete=("valid", "all"), retryable=("retryable", "any")
    )
    incomplete = per_pair[~per_pair["complete"]]
    counts = {
        "failed": int(incomplete["retryable"].sum()),
        "unreadable": int((~incomplete["retryable"]).sum()),
    }
    return {k: v for k, v in counts.items() if v}


def incomplete_prompt_ids(judgments: Dataset) -> set[str]:
    """Prompts with at least one pair lacking complete evidence (nightly does not count them
    as seen, so they come back)."""
    table = judgments.select_columns(["prompt_id", "status", "p_a"]).with_format("arrow")[:]
    complete = _valid(table)
    ids = table["prompt_id"].to_numpy(zero_copy_only=False)
    return {str(i) for i in ids[~complete]}


def _valid(table: pa.Table) -> np.ndarray:
    p_a = table["p_a"].to_numpy(zero_copy_only=False).astype(float)
    return (table["status"].to_numpy(zero_copy_only=False) == "ok") & ~np.isnan(p_a)


def _complete_groups(table: pa.Table, by: str) -> np.ndarray:
    """Per judgment row: whether every row of its group (pair or prompt) is valid."""
    codes, _ = pd.factorize(table[by].to_numpy(zero_copy_only=False), sort=False)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    invalid = np.bincount(codes, (~_valid(table)).astype(float), n_groups)
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
    valid = _valid(table)
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
    valid = _valid(table)
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


def _random_per_group(groups: pa.ChunkedArray, k: int, seed: int) -> pa.Array:
    codes, _ = pd.factorize(groups.to_numpy(zero_copy_only=False), sort=False)
    noise = np.random.default_rng(seed).random(len(codes))
    order = np.lexsort((noise, codes))
    rank = pd.Series(codes[order]).groupby(codes[order]).cumcount().to_numpy()
    return pa.array(np.sort(order[rank < k]))


def _prompts(prompts: pa.Array, system_prompt: str | None) -> pa.Array:
    """Each prompt as the conversation TRL's trainers take (:func:`rlaif.chat.chat`): built
    column-wise from one-message prompts, message by message from conversations."""
    if not pa.types.is_list(prompts.type):
        return _conversations(chat("", system_prompt), prompts)
    conversations = [chat(p, system_prompt) for p in prompts.to_pylist()]
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.array(conversations, type=pa.list_(message))


def _answers(texts: pa.Array) -> pa.ListArray:
    """One single-message assistant conversation per text."""
    return _conversations([{"role": "assistant", "content": ""}], texts)


def _conversations(template: list[dict[str, str]], texts: pa.Array) -> pa.ListArray:
    """``template`` (as :func:`rlaif.chat.chat` builds it) once per text, its last message's
    content replaced by the text; columnar, so a million rows take a fraction of a second."""
    n, width = len(texts), len(template)
    columns = [pa.array(np.full(n, m["content"], dtype=object), type=pa.string()) for m in template]
    columns[-1] = texts.cast(pa.string())
    content = pa.concat_arrays(columns).take(
        pa.array(np.arange(width * n).reshape(width, n).T.ravel())
    )
    roles = np.tile(np.array([m["role"] for m in template], dtype=object), n)
    struct = pa.StructArray.from_arrays(
        [pa.array(roles, type=pa.string()), content], names=["role", "content"]
    )
    offsets = pa.array(np.arange(0, width * n + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, struct)


def _to_dataset(pairs: pa.Table, system_prompt: str | None) -> Dataset:
    def column(name: str) -> pa.Array:
        return pairs[name].combine_chunks()

    p_a = pairs["p_a"].to_numpy(zero_copy_only=False)
    a_wins = pa.array(p_a >= 0.5)
    first, second = column("response_a"), column("response_b")
    p_chosen = np.where(p_a >= 0.5, p_a, 1.0 - p_a)
    table = pa.table(
        {
            "prompt": _prompts(column("prompt"), system_prompt),
            "chosen": _answers(pc.if_else(a_wins, first, second)),
            "rejected": _answers(pc.if_else(a_wins, second, first)),
            "p_chosen": pa.array(p_chosen, type=pa.float64()),
            "margin": pa.array(2.0 * p_chosen - 1.0, type=pa.float64()),
            "tie": column("tie").cast(pa.bool_()),
            "prompt_id": column("prompt_id").cast(pa.string()),
            "pair_id": column("pair_id").cast(pa.string()),
            "n_judgments": column("n_judgments").cast(pa.int64()),
            "complete": column("complete").cast(pa.bool_()),
            **{name: column(name) for name in [*PROVENANCE, "judgment_keys"]},
        }
    )
    return Dataset(InMemoryTable(table))
