"""Stage 6: the trained policy against the SFT model on held-out prompts, judged the same way.

Each held-out prompt gets one response from each model; the judges compare them in
both orders, and the win rate comes with a 95% bootstrap interval over prompts.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset

from rlaif.config import EvaluateConfig, JudgeConfig, SampleConfig
from rlaif.judges import Budget
from rlaif.preferences.bias import fit_logistic
from rlaif.stages.judge import judge
from rlaif.stages.sample import sample
from rlaif.store import JudgmentStore


@dataclass(frozen=True)
class WinRate:
    n: int
    win_rate: float
    ci_low: float
    ci_high: float
    soft_win_rate: float
    wins: int
    ties: int
    losses: int
    unjudged: int

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(
    held_out: Dataset,
    cfg: EvaluateConfig,
    *,
    policy: str | Path,
    reference: str,
    sample_cfg: SampleConfig,
    judge_cfg: JudgeConfig,
    store: JudgmentStore,
    budget: Budget | None = None,
) -> Dataset:
    """One row per held-out prompt: both responses, ``p_policy`` = P(policy wins) and the
    ``cost_usd`` of the judge calls paid for it in this run."""
    gen = sample_cfg.model_copy(
        update={
            "n": 1,
            "temperature": cfg.temperature,
            "max_new_tokens": cfg.max_new_tokens or sample_cfg.max_new_tokens,
            "seed": cfg.seed,
        }
    )
    ours = sample(held_out, gen, model=str(policy))
    theirs = sample(held_out, gen, model=reference)
    pairs = Dataset.from_dict(
        {
            "pair_id": [f"eval:{p}" for p in held_out["prompt_id"]],
            "prompt_id": held_out["prompt_id"],
            "prompt": held_out["prompt"],
            "index_a": [0] * len(held_out),
            "index_b": [0] * len(held_out),
            "response_a": [r[0] for r in ours["responses"]],
            "response_b": [r[0] for r in theirs["responses"]],
            **(
                {"reference": held_out["reference"]} if "reference" in held_out.column_names else {}
            ),
        }
    )
    identical = [
        a.strip() == b.strip()
        for a, b in zip(pairs["response_a"], pairs["response_b"], strict=True)
    ]
    different = pairs.select([i for i, same in enumerate(identical) if not same])
    p_by_pair: dict[str, list[float]] = {}
    cost_by_pair: dict[str, float] = {}
    if len(different):
        for rec in judge(different, judge_cfg, store=store, budget=budget):
            if rec["status"] == "ok" and rec["p_a"] is not None:
                p_by_pair.setdefault(rec["pair_id"], []).append(rec["p_a"])
            if not rec["cached"]:
                cost_by_pair[rec["pair_id"]] = cost_by_pair.get(rec["pair_id"], 0.0) + (
                    rec["cost_usd"] or 0.0
                )
    p_policy = []
    for pair_id, same in zip(pairs["pair_id"], identical, strict=True):
        ps = [0.5] if same else p_by_pair.get(pair_id)
        p_policy.append(sum(ps) / len(ps) if ps else None)
    return Dataset.from_dict(
        {
            "prompt_id": pairs["prompt_id"],
            "prompt": pairs["prompt"],
            "policy_response": pairs["response_a"],
            "reference_response": pairs["response_b"],
            "identical": identical,
            "p_policy": p_policy,
            "cost_usd": [cost_by_pair.get(p, 0.0) for p in pairs["pair_id"]],
        }
    )


def win_rate(p_policy: list[float | None], *, bootstrap: int = 2000, seed: int = 0) -> WinRate:
    """Hard win rate (a tie counts half) with a percentile bootstrap 95% interval."""
    judged = [p for p in p_policy if p is not None]
    if not judged:
        return WinRate(
            0, float("nan"), float("nan"), float("nan"), float("nan"), 0, 0, 0, len(p_policy)
        )
    scores = [1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5 for p in judged]
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(sum(rng.choices(scores, k=n)) / n for _ in range(bootstrap))
    return WinRate(
        n=n,
        win_rate=sum(scores) / n,
        ci_low=means[int(0.025 * (bootstrap - 1))],
        ci_high=means[int(0.975 * (bootstrap - 1))],
        soft_win_rate=sum(judged) / n,
        wins=scores.count(1.0),
        ties=scores.count(0.5),
        losses=scores.count(0.0),
        unjudged=len(p_policy) - n,
    )


def length_controlled_win_rate(
    p_policy: list[float | None], policy: list[str], reference: list[str]
) -> float | None:
    """The win rate the policy would have at equal length, as AlpacaEval's LC win rate:
    a logistic model of P(policy wins) with a length-difference term, read at zero."""
    rows = [
        (p, len(a) - len(b))
        for p, a, b in zip(p_policy, policy, reference, strict=True)
        if p is not None
    ]
    if len(rows) < 2:
        return None
    y = np.array([p for p, _ in rows])
    diff = np.array([d for _, d in rows], dtype=float)
    scale = diff.std()
    x = np.tanh(diff / scale) if scale > 0 else diff
    return float(1.0 / (1.0 + np.exp(-fit_logistic(x, y)[0])))
