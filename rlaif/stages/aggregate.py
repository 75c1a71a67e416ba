"""Stage 4: one soft preference per pair from all its judgments, in TRL's format.

Soft labels are averaged across orders and judges, which cancels a constant position
bias; hard verdicts that flip with the order are a tie (the judge followed the
position, not the content), dropped or kept by config.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from datasets import Dataset

from rlaif.config import AggregateConfig

log = logging.getLogger(__name__)


def aggregate(judgments: Dataset, cfg: AggregateConfig) -> Dataset:
    """``prompt``/``chosen``/``rejected`` (conversational) plus ``p_chosen``, ``margin`` and
    the provenance of every judgment behind the row."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in judgments:
        groups[rec["pair_id"]].append(rec)
    rows = []
    dropped = {"no_valid_judgment": 0, "tie": 0, "low_margin": 0}
    for pair_id, recs in groups.items():
        valid = [r for r in recs if r["status"] == "ok" and r["p_a"] is not None]
        if not valid:
            dropped["no_valid_judgment"] += 1
            continue
        p_a = sum(r["p_a"] for r in valid) / len(valid)
        votes = {r["p_a"] > 0.5 for r in valid if r["p_a"] != 0.5}
        tie = len(votes) != 1
        if tie and cfg.ties == "drop":
            dropped["tie"] += 1
            continue
        margin = abs(2.0 * p_a - 1.0)
        if margin < cfg.min_margin:
            dropped["low_margin"] += 1
            continue
        first = recs[0]
        a_wins = p_a >= 0.5
        chosen, rejected = (
            (first["response_a"], first["response_b"])
            if a_wins
            else (first["response_b"], first["response_a"])
        )
        rows.append(
            {
                "prompt": [{"role": "user", "content": first["prompt"]}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "p_chosen": p_a if a_wins else 1.0 - p_a,
                "margin": margin,
                "tie": tie,
                "prompt_id": first["prompt_id"],
                "pair_id": pair_id,
                "n_judgments": len(valid),
                "judges": sorted({r["judge"] for r in valid}),
                "rubric_ids": sorted({r["rubric_id"] for r in valid}),
                "rubric_hashes": sorted({r["rubric_hash"] for r in valid}),
                "judgment_keys": [r["key"] for r in valid],
            }
        )
    log.info("aggregate: %d pairs -> %d preferences; dropped %s", len(groups), len(rows), dropped)
    if not rows:
        return Dataset.from_dict(
            {
                c: []
                for c in (
                    "prompt",
                    "chosen",
                    "rejected",
                    "p_chosen",
                    "margin",
                    "tie",
                    "prompt_id",
                    "pair_id",
                )
            }
        )
    return Dataset.from_list(rows)
