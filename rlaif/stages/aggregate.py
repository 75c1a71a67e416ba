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
from rlaif.debias.bias import judge_report
from rlaif.debias.calibration import Calibration, calibration_hashes, panel_calibrations
from rlaif.debias.combine import best_vs_worst, calibrated, combine, complete_groups, is_valid
from rlaif.errors import RlaifError
from rlaif.hashing import stable_hash
from rlaif.judges.failures import failure_reason
from rlaif.judging.schema import PAIR_COLUMNS, PROVENANCE
from rlaif.judging.store import pair_key

if TYPE_CHECKING:
    from rlaif.run.context import Run

log = logging.getLogger(__name__)
_COLUMNS = [*PAIR_COLUMNS, "judge", "order", "status", "p_a", "key", "rubric_id", "rubric_hash"]
"""What aggregation reads of each judgment row."""


def covered(run: Run) -> dict:
    """What the fingerprint covers besides the ``aggregate`` config: each judge's calibration
    file (a refit aggregates again) and, with ``human_labels: override``, people's labels."""
    out: dict = {}
    if calibrations := calibration_hashes(run.cfg.judge):
        out["calibrations"] = calibrations
    if run.cfg.aggregate.human_labels == "override":  # a new label aggregates again
        with run.store() as store:
            labels = {k: row["label"] for k, row in store.human_labels().items()}
        out["labels"] = stable_hash(labels)
    return out


def step(run: Run) -> dict:
    """The stage in a run: the preferences, the judge report, and what was held back."""
    judged = run.input("judge")
    judgments = deciding(judged)
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
    report = judge_report(judged.to_pandas())  # each judge on all it answered
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
    judgments = deciding(judgments)
    # through the arrow formatter, so a selected or filtered dataset is read as it appears
    table = judgments.select_columns(_COLUMNS).with_format("arrow")[:].combine_chunks()
    if calibrations:
        table = calibrated(table, calibrations)
    by = "prompt_id" if cfg.selection == "best_vs_worst" else "pair_id"
    complete_row = complete_groups(table, by)
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


def deciding(judgments: Dataset) -> Dataset:
    """The judgments that decide their pairs: under ``judge.cascade`` (a ``decides`` column)
    the strong judge's where it was asked, the others' elsewhere; else all of them."""
    if "decides" not in judgments.column_names:
        return judgments
    kept = judgments.select([i for i, d in enumerate(judgments["decides"]) if d])
    return kept.remove_columns("decides")


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
    complete = is_valid(table)
    ids = table["prompt_id"].to_numpy(zero_copy_only=False)
    return {str(i) for i in ids[~complete]}


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
