"""One answer against another on the same prompts, judged in both orders: the evaluation's
policy against the SFT model, and ``train.monitor``'s check. One copy of what a head-to-head
is: identical answers tie (0.5) without a call; otherwise P(ours wins) is averaged over the
judges and orders that answered, None where none did."""

from __future__ import annotations

from datasets import Dataset

from rlaif.chat import Prompt
from rlaif.config import JudgeConfig
from rlaif.executors.config import RayConfig
from rlaif.judges import Budget
from rlaif.judging.service import judge
from rlaif.judging.store import JudgmentStore


def head_to_head(
    ids: list[str],
    prompt_ids: list[str],
    prompts: list[Prompt],
    ours: list[str],
    theirs: list[str],
    cfg: JudgeConfig,
    *,
    store: JudgmentStore,
    budget: Budget | None = None,
    references: list[str] | None = None,
    ray: RayConfig | None = None,
) -> tuple[list[float | None], dict[str, float]]:
    """P(``ours`` beats ``theirs``) per prompt (``ids`` name the pairs; ``prompt_ids`` their
    prompts, which a listwise judge's shown orders are seeded by), and what the judge calls
    paid for each pair in this call cost."""
    identical = [a.strip() == b.strip() for a, b in zip(ours, theirs, strict=True)]
    differ = [n for n, same in enumerate(identical) if not same]
    p_by_pair: dict[str, list[float]] = {}
    cost_by_pair: dict[str, float] = {}
    if differ:
        pairs = Dataset.from_dict(
            {
                "pair_id": [ids[n] for n in differ],
                "prompt_id": [prompt_ids[n] for n in differ],
                "prompt": [prompts[n] for n in differ],
                "index_a": [0] * len(differ),
                "index_b": [1] * len(differ),
                "response_a": [ours[n] for n in differ],
                "response_b": [theirs[n] for n in differ],
                **({"reference": [references[n] for n in differ]} if references else {}),
            }
        )
        for rec in judge(pairs, cfg, store=store, budget=budget, ray=ray):
            if rec["status"] == "ok" and rec["p_a"] is not None:
                p_by_pair.setdefault(rec["pair_id"], []).append(rec["p_a"])
            if not rec["cached"]:
                cost = rec["cost_usd"] or 0.0
                cost_by_pair[rec["pair_id"]] = cost_by_pair.get(rec["pair_id"], 0.0) + cost
    p_ours: list[float | None] = []
    for pair_id, same in zip(ids, identical, strict=True):
        got = [0.5] if same else p_by_pair.get(pair_id)
        p_ours.append(sum(got) / len(got) if got else None)
    return p_ours, cost_by_pair
