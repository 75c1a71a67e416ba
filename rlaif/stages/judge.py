"""Stage 3: every pair judged (in both orders by default) by every configured judge,
through the judging service (:mod:`rlaif.judging.service`): cached answers reused, new ones
stored as they arrive, failures asked again on the next run."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from rlaif.config import JudgeConfig
from rlaif.hashing import stable_hash
from rlaif.judges.failures import failure_reason
from rlaif.judging.service import judge
from rlaif.rubrics import load_rubric

if TYPE_CHECKING:
    from rlaif.run.context import Run

__all__ = [
    "adaptive_counts", "cascade_counts", "failure_counts", "judge", "prompt_cache_counts", "step",
]  # fmt: skip


def covered(run: Run) -> dict[str, Any]:
    """What the fingerprint covers besides the ``judge`` config: checklists people edited
    (``rlaif checklists edit``), so an edit judges the answers again."""
    if not run.cfg.judgment_store_path().exists():
        return {}
    with run.store() as store:
        edits = store.checklist_edits()
    return {"checklist_edits": stable_hash(edits)} if edits else {}


def step(run: Run) -> dict[str, Any]:
    """The stage in a run: judgments with what they cost and why any failed."""
    spent = run.budget.spent  # what this stage's calls cost, each call once (a listwise
    # call answers for several rows, a checklist is written once for all of a prompt's)
    with run.store() as store:
        pairs = run.input("pair")
        out = judge(
            pairs,
            run.cfg.judge,
            store=store,
            budget=run.budget,
            batch_dir=run.dir.batches,
            ray=run.cfg.ray_executor(),
        )
    run.save("judge", out)
    statuses = out["status"]
    counts: dict[str, Any] = {
        "judgments": len(out),
        "cached": sum(out["cached"]),
        **{s: statuses.count(s) for s in sorted(set(statuses))},
        "cost_usd": round(run.budget.spent - spent, 6),
        "store": str(run.cfg.judgment_store_path().resolve()),
    }
    if run.cfg.judge.orders == "adaptive":
        counts["adaptive"] = adaptive_counts(out, len(pairs), run.cfg.judge)
    failures = failure_counts(out, run.cfg.judge.max_failures)
    if failures:
        counts["failures"] = failures
    cache = prompt_cache_counts(out)
    if cache:
        counts["prompt_cache"] = cache
    if run.cfg.judge.cascade is not None:
        counts["cascade"] = cascade_counts(out, run.cfg.judge.cascade.strong)
    return counts


def cascade_counts(judgments: Dataset, strong: str) -> dict[str, Any]:
    """How many pairs a cascade's strong judge was asked about, of all the pairs judged."""
    pairs = len(set(judgments["pair_id"]))
    asked = len({p for p, j in zip(judgments["pair_id"], judgments["judge"], strict=True)
                 if j == strong})  # fmt: skip
    return {"pairs": pairs, "strong_pairs": asked, "strong_share": round(asked / pairs, 4)}


def prompt_cache_counts(judgments: Dataset) -> dict[str, Any]:
    """The input of this run's calls and what of it the providers' prompt caches held
    (read), took in (written) and saved in USD against the full input price; empty when no
    provider reported its cache. A call answering several rows (listwise) counts once."""
    if "cached_input_tokens" not in judgments.column_names:
        return {}
    calls = {
        r["key"]: r
        for r in judgments.select_columns(
            ["key", "cached", "input_tokens", "cached_input_tokens", "cache_write_tokens",
             "cache_saved_usd"]
        )
        if not r["cached"] and r["cached_input_tokens"] is not None
    }  # fmt: skip
    if not calls:
        return {}
    total = sum(r["input_tokens"] or 0 for r in calls.values())
    read = sum(r["cached_input_tokens"] or 0 for r in calls.values())
    return {
        "input_tokens": total,
        "cached_input_tokens": read,
        "cache_write_tokens": sum(r["cache_write_tokens"] or 0 for r in calls.values()),
        "cached_share": round(read / total, 4) if total else 0.0,
        "saved_usd": round(sum(r["cache_saved_usd"] or 0.0 for r in calls.values()), 6),
    }


def adaptive_counts(judgments: Dataset, pairs: int, cfg: JudgeConfig) -> dict[str, Any]:
    """What ``orders: adaptive`` asked (calls: a listwise call answers for several rows),
    against the calls every order would have made: both orders of each pair, or each
    prompt's ``permutations`` lists."""
    prompts = len(set(judgments["prompt_id"]))
    both = 0
    for spec in cfg.judges:
        if spec.name != cfg.adaptive.escalate_to:
            mode = spec.mode if spec.backend == "python" else load_rubric(spec.rubric).mode
            both += prompts * cfg.permutations if mode == "listwise" else 2 * pairs
    asked = len(set(judgments["key"]))
    out: dict[str, Any] = {"requests": asked, "both_orders_requests": both}
    if cfg.adaptive.escalate_to is not None:
        out["escalated"] = judgments["judge"].count(cfg.adaptive.escalate_to)
    out["calls_saved"] = round(1 - asked / both, 4) if both else 0.0
    return out


def failure_counts(judgments: Dataset, max_failures: int) -> dict[str, object]:
    """Failed judgments (calls, by key) by reason (error type and status code), and how many
    will be asked again on the next run (``retryable``) or have failed too often
    (``gave_up``)."""
    failed = list(
        {
            key: (error or "", failures or 0)
            for key, status, error, failures in zip(
                judgments["key"],
                judgments["status"],
                judgments["error"],
                judgments["failures"],
                strict=True,
            )
            if status == "error"
        }.values()
    )
    if not failed:
        return {}
    retryable = sum(n < max_failures for _, n in failed)
    return {
        "retryable": retryable,
        "gave_up": len(failed) - retryable,
        "reasons": dict(Counter(failure_reason(e) for e, _ in failed).most_common()),
    }
