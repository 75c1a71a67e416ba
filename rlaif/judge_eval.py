"""How well a judge setup agrees with people, with and without each debiasing step.

Takes a labelled preference file (``prompt``/``chosen``/``rejected``, or HH-RLHF's whole
dialogues in ``chosen``/``rejected``), shows each pair to the pipeline's judges in both
orders (the human-preferred answer placed first or second at random), and reports accuracy
against the human label for: one order only (what most pipelines do), both orders
averaged, order-inconsistent pairs dropped, and length correction on top; plus the judges'
position and length bias.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
from datasets import Dataset, load_dataset, load_from_disk

from rlaif.config import AggregateConfig, JudgeConfig
from rlaif.errors import ConfigError
from rlaif.preferences.bias import judge_report
from rlaif.stages.aggregate import combine
from rlaif.stages.judge import judge
from rlaif.store import JudgmentStore

_ASSISTANT = "\n\nAssistant:"
log = logging.getLogger(__name__)


def load_labelled(path: str | Path, limit: int | None = None, seed: int = 0) -> Dataset:
    """``prompt``, ``chosen``, ``rejected`` as plain text, whatever the file's flavour."""
    path = Path(path)
    if path.is_dir():
        raw = load_from_disk(str(path))
    else:
        kind = next(
            (
                k
                for s, k in (
                    (".jsonl", "json"),
                    (".json", "json"),
                    (".csv", "csv"),
                    (".parquet", "parquet"),
                )
                if s in path.suffixes
            ),
            None,
        )
        if kind is None or not path.is_file():
            raise ConfigError(
                f"{path}: expected a .jsonl(.gz), .json, .csv or .parquet file, "
                "or a save_to_disk folder"
            )
        raw = load_dataset(kind, data_files=str(path), split="train")
    missing = [c for c in ("chosen", "rejected") if c not in raw.column_names]
    if missing:
        raise ConfigError(
            f"{path}: no column(s) {', '.join(missing)}; columns are: {', '.join(raw.column_names)}"
        )
    if limit is not None and limit < len(raw):
        raw = raw.select(sorted(random.Random(seed).sample(range(len(raw)), limit)))
    rows, skipped = [], []
    for n, rec in enumerate(raw):
        if "prompt" in rec:
            parts = tuple(_text(rec[k]) for k in ("prompt", "chosen", "rejected"))
        else:
            parts = _split_dialogue(rec["chosen"], rec["rejected"])
        if parts is None or parts[1] == parts[2]:
            skipped.append(n + 1)
            continue
        rows.append(dict(zip(("prompt", "chosen", "rejected"), parts, strict=True)))
    if skipped:
        log.warning(
            "%s: skipped %d row(s) whose answers could not be told apart (rows %s)",
            path,
            len(skipped),
            ", ".join(map(str, skipped[:10])),
        )
    return Dataset.from_list(rows)


def judge_eval(labelled: Dataset, judges: JudgeConfig, store: JudgmentStore, seed: int = 0) -> dict:
    rng = random.Random(seed)
    a_is_chosen = [rng.random() < 0.5 for _ in range(len(labelled))]
    pairs = Dataset.from_dict(
        {
            "pair_id": [f"h{i}:0-1" for i in range(len(labelled))],
            "prompt_id": [f"h{i}" for i in range(len(labelled))],
            "prompt": labelled["prompt"],
            "index_a": [0] * len(labelled),
            "index_b": [1] * len(labelled),
            "response_a": [
                c if a else r
                for c, r, a in zip(
                    labelled["chosen"], labelled["rejected"], a_is_chosen, strict=True
                )
            ],
            "response_b": [
                r if a else c
                for c, r, a in zip(
                    labelled["chosen"], labelled["rejected"], a_is_chosen, strict=True
                )
            ],
        }
    )
    judgments = judge(pairs, judges.model_copy(update={"orders": "both"}), store=store)
    truth = dict(zip(pairs["pair_id"], a_is_chosen, strict=True))
    table = judgments.with_format("arrow")[:]
    first_only = judgments.filter(lambda r: r["order"] == "ab").with_format("arrow")[:]
    variants = {
        "one_order": _accuracy(combine(first_only, AggregateConfig(ties="keep")), truth, False),
        "both_orders": _accuracy(combine(table, AggregateConfig(ties="keep")), truth, False),
        "both_orders_ties_dropped": _accuracy(combine(table, AggregateConfig()), truth, True),
        "length_corrected": _accuracy(
            combine(table, AggregateConfig(ties="keep", length_correction=True)), truth, False
        ),
    }
    return {
        "pairs": len(labelled),
        "accuracy": variants,
        "bias": judge_report(judgments.to_pandas()),
    }


def _accuracy(pairs, truth: dict[str, bool], drop_ties: bool) -> dict:
    ids = pairs["pair_id"].to_pylist()
    p_a = pairs["p_a"].to_numpy(zero_copy_only=False)
    tie = pairs["tie"].to_numpy(zero_copy_only=False)
    keep = ~np.isnan(p_a) & (~tie if drop_ties else True)
    a_true = np.array([truth[i] for i in ids])
    score = np.where(p_a > 0.5, a_true, np.where(p_a < 0.5, ~a_true, 0.5)).astype(float)
    kept = score[keep]
    return {
        "accuracy": round(float(kept.mean()), 4) if len(kept) else None,
        "coverage": round(float(keep.mean()), 4) if len(keep) else None,
    }


def _text(value: object) -> str:
    if isinstance(value, list):  # conversational: the last message is the answer
        return "\n".join(m["content"] for m in value) if len(value) > 1 else value[-1]["content"]
    return str(value)


def _split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """HH-RLHF: two dialogues that share a prefix up to an assistant turn; the prompt is that
    prefix and the answers are what follows it (None when they share no assistant turn)."""
    common = 0
    for x, y in zip(chosen, rejected, strict=False):
        if x != y:
            break
        common += 1
    cut = chosen.rfind(_ASSISTANT, 0, common + len(_ASSISTANT))
    if cut <= 0 or rejected[cut : cut + len(_ASSISTANT)] != _ASSISTANT:
        return None
    start = cut + len(_ASSISTANT)
    return chosen[:cut].strip(), chosen[start:].strip(), rejected[start:].strip()
