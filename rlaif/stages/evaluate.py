"""Stage 6: the trained policy against the SFT model on held-out prompts, judged the same way.

Each held-out prompt gets one response from each model; the judges compare them in
both orders, and the win rate comes with a 95% bootstrap interval over prompts.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from datasets import Dataset

from rlaif.config import EvaluateConfig, JudgeConfig, SampleConfig
from rlaif.debias.bias import fit_logistic
from rlaif.executors.config import RayConfig
from rlaif.judges import Budget
from rlaif.judging.head_to_head import head_to_head
from rlaif.judging.store import JudgmentStore
from rlaif.models.loading import resolve_model
from rlaif.stages.sample import sample

if TYPE_CHECKING:
    from rlaif.run.context import Run


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


def step(run: Run) -> dict[str, Any]:
    """The stage in a run: the comparisons, and their summary (win rate with its interval,
    length-controlled win rate, KL to the SFT model, length drift) in ``summary.json`` and
    the manifest."""
    cfg = run.cfg
    with run.store() as store:
        out = evaluate(
            run.heldout,
            cfg.evaluate,
            policy=run.dir.policy,
            reference=cfg.model,
            sample_cfg=cfg.sample,
            judge_cfg=cfg.judge,
            store=store,
            budget=run.budget,
            ray=cfg.ray_executor(),
        )
        if run.start:  # an on-policy round: against the policy it started from, too
            previous = evaluate(
                run.heldout,
                cfg.evaluate,
                policy=run.dir.policy,
                reference=str(run.start.path),
                sample_cfg=cfg.sample.local(),
                judge_cfg=cfg.judge,
                store=store,
                budget=run.budget,
                policy_answers=out["policy_response"],
            )
            out = out.add_column("previous_response", previous["reference_response"])
            out = out.add_column("p_vs_previous", previous["p_policy"])
            out = out.add_column("cost_vs_previous_usd", previous["cost_usd"])
    run.save("evaluate", out)
    summary = win_rate(out["p_policy"], bootstrap=cfg.evaluate.bootstrap, seed=cfg.evaluate.seed)
    summary = summary.as_dict()
    if run.start:
        summary["vs_previous"] = {
            **win_rate(
                out["p_vs_previous"], bootstrap=cfg.evaluate.bootstrap, seed=cfg.evaluate.seed
            ).as_dict(),
            "previous": run.start.origin,
        }
    summary["lc_win_rate"] = length_controlled_win_rate(
        out["p_policy"], out["policy_response"], out["reference_response"]
    )
    from rlaif.training.kl import estimate_kl  # torch: loaded only when evaluation runs

    summary["kl_to_sft"] = estimate_kl(
        run.dir.policy,
        resolve_model(cfg.model),
        list(run.heldout["prompt"]),
        max_new_tokens=cfg.evaluate.max_new_tokens or cfg.sample.max_new_tokens,
        seed=cfg.evaluate.seed,
        dtype=cfg.sample.dtype,
        system_prompt=cfg.sample.system_prompt,
    )
    summary["mean_chars_policy"] = _mean_len(out["policy_response"])
    summary["mean_chars_reference"] = _mean_len(out["reference_response"])
    summary["length_drift"] = length_drift(out["policy_response"], out["reference_response"])
    run.dir.evaluation_summary.write_text(json.dumps(summary, indent=2))
    run.manifest["evaluation"] = summary
    cost = sum(out["cost_usd"]) + sum(out["cost_vs_previous_usd"] if run.start else [])
    unjudged = summary["unjudged"] + summary.get("vs_previous", {}).get("unjudged", 0)
    return {
        "prompts": len(out),
        "judged": summary["n"],
        "cost_usd": round(cost, 6),
        # prompts left unjudged because the budget ran out make the stage partial
        "skipped": unjudged if run.budget.exhausted() else 0,
    }


def length_drift(policy: list[str | None], reference: list[str | None]) -> dict[str, Any]:
    """How the policy's answers differ in length from the SFT model's on the held-out prompts:
    mean and median characters and words (whitespace-separated, a rough token count) for each,
    and the change (policy minus SFT, and policy / SFT)."""
    drift: dict[str, Any] = {"n": len(policy)}
    for side, texts in (("policy", policy), ("reference", reference)):
        chars = [len(t or "") for t in texts]
        words = [len((t or "").split()) for t in texts]
        drift[side] = {
            "mean_chars": _round(statistics.fmean(chars)) if chars else None,
            "median_chars": _round(statistics.median(chars)) if chars else None,
            "mean_words": _round(statistics.fmean(words)) if words else None,
            "median_words": _round(statistics.median(words)) if words else None,
        }
    drift["change"] = {}
    for key in ("mean_chars", "median_chars", "mean_words", "median_words"):
        ours, theirs = drift["policy"][key], drift["reference"][key]
        drift["change"][key] = None if ours is None else round(ours - theirs, 1)
        drift["change"][f"{key}_ratio"] = round(ours / theirs, 3) if ours and theirs else None
    return drift


def _round(value: float) -> float:
    return round(float(value), 1)


def _mean_len(texts: list[str]) -> float:
    return round(sum(map(len, texts)) / len(texts), 1) if texts else 0.0


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
    policy_answers: list[str] | None = None,
    ray: RayConfig | None = None,
) -> Dataset:
    """One row per held-out prompt: both responses, ``p_policy`` = P(policy wins) and the
    ``cost_usd`` of the judge calls paid for it in this run. ``policy_answers`` are the
    policy's answers when they were sampled already (greedy, so the same). The policy samples
    here (only this machine has it); the reference as ``sample_cfg`` says (a served SFT model
    through its server), on Ray actors with ``ray``, which also judge."""
    gen = sample_cfg.model_copy(
        update={
            "n": 1,
            "temperature": cfg.temperature,
            "max_new_tokens": cfg.max_new_tokens or sample_cfg.max_new_tokens,
            "seed": cfg.seed,
        }
    )
    ours = (
        [r[0] for r in sample(held_out, gen.local(), model=str(policy))["responses"]]
        if policy_answers is None
        else policy_answers
    )
    theirs = [r[0] for r in sample(held_out, gen, model=reference, ray=ray)["responses"]]
    ids = [f"eval:{p}" for p in held_out["prompt_id"]]
    references = held_out["reference"] if "reference" in held_out.column_names else None
    p_policy, cost_by_pair = head_to_head(
        ids, list(held_out["prompt_id"]), list(held_out["prompt"]), list(ours), theirs,
        judge_cfg, store=store, budget=budget, references=references, ray=ray,
    )  # fmt: skip
    return Dataset.from_dict(
        {
            "prompt_id": held_out["prompt_id"],
            "prompt": held_out["prompt"],
            "policy_response": list(ours),
            "reference_response": theirs,
            "identical": [a.strip() == b.strip() for a, b in zip(ours, theirs, strict=True)],
            "p_policy": p_policy,
            "cost_usd": [cost_by_pair.get(p, 0.0) for p in ids],
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
