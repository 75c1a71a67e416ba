"""Listwise judging against pairs in both orders: calls, cost, and the accuracy kept.

1. Accuracy, on simulated judges with a known truth (``rlaif.testing.simulated``): every
   pair of N answers in both orders against one listwise call per order shown
   (``judge.permutations``, default 2), aggregated by the aggregate stage; the ratio is
   listwise accuracy over pairwise accuracy; and with adaptive orders (each prompt's other
   order asked only where its first list left a pair unsure, as ``orders: adaptive`` does).
2. Calls and cost of a night on the loopback judge server (real HTTP, the openai SDK, the
   judge stage, a priced judge): P prompts x N answers, ``helpful_harmless_json`` in both
   orders online against ``listwise_helpful_json`` online and through the provider's batch
   API (the loopback batch endpoints, half price), and with adaptive orders through the batch
   API. Prints calls per prompt, cost, the
   preferences each publishes and preferences per dollar.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
from pathlib import Path

import datasets
from bench_common import quiet
from datasets import Dataset

from rlaif.config import (
    AdaptiveOrdersConfig,
    AggregateConfig,
    JudgeConfig,
    OpenAIJudgeConfig,
    Price,
)
from rlaif.debias.adaptive_orders import select_lists
from rlaif.judges import Budget
from rlaif.judging.store import JudgmentStore
from rlaif.stages import aggregate, judge
from rlaif.testing.batch_server import LoopbackBatchServer
from rlaif.testing.simulated import SimulatedJudge, simulate, simulate_listwise

PRICE = Price(input_per_mtok=2.5, output_per_mtok=10.0)
"""A priced judge (USD per million tokens), in the range of the large API models."""
JUDGES = {
    "soft": SimulatedJudge(name="soft"),
    "soft_position_biased": SimulatedJudge(name="soft_biased", position_bias=1.0),
    "soft_noisy": SimulatedJudge(name="noisy", noise=2.0, position_bias=0.5),
    "hard": SimulatedJudge(name="hard", soft=False),
    "hard_position_biased": SimulatedJudge(name="hard_biased", soft=False, position_bias=1.0),
}


def accuracy_kept(prompts: int, answers: int, permutations: int) -> dict:
    out = {}
    cfg = AggregateConfig(ties="keep")
    adaptive = AdaptiveOrdersConfig()
    for name, sim_judge in JUDGES.items():
        pairwise = simulate([sim_judge], prompts=prompts, responses=answers)
        listwise = simulate_listwise(
            sim_judge, prompts=prompts, responses=answers, permutations=permutations
        )
        rows = listwise.judgments.to_pandas()
        rows["p_first"] = rows["p_a"].where(rows["order"] == "ab", 1 - rows["p_a"])
        chosen = select_lists(rows, threshold=adaptive.threshold, bias_share=adaptive.bias_sample)
        a = pairwise.accuracy(aggregate(pairwise.judgments, cfg))
        b = listwise.accuracy(aggregate(listwise.judgments, cfg))
        c = listwise.accuracy(aggregate(Dataset.from_pandas(chosen, preserve_index=False), cfg))
        calls = chosen["key"].nunique() / prompts
        out[name] = {
            "pairwise": round(a, 4),
            "listwise": round(b, 4),
            "kept": round(b / a, 3),
            "adaptive": round(c, 4),
            "adaptive_kept": round(c / a, 3),
            "adaptive_calls_per_prompt": round(calls, 3),
        }
        print(
            f"  {name:<22} pairwise {a:.4f}  listwise {b:.4f} (kept {b / a:.3f})  adaptive "
            f"{c:.4f} (kept {c / a:.3f}, {calls:.2f} calls/prompt)",
            flush=True,
        )
    return out


def night(prompts: int, answers: int) -> Dataset:
    """Pairs of answers of different lengths (the loopback judge prefers the shorter)."""
    rows = []
    for p in range(prompts):
        texts = [
            f"Answer {i} to request {p}: " + "detail " * (3 * i + p % 5) for i in range(answers)
        ]
        for i, j in itertools.combinations(range(answers), 2):
            rows.append(
                {
                    "pair_id": f"p{p}:{i}-{j}",
                    "prompt_id": f"p{p}",
                    "prompt": f"Request {p}: explain something useful in a few sentences.",
                    "index_a": i,
                    "index_b": j,
                    "response_a": texts[i],
                    "response_b": texts[j],
                }
            )
    return Dataset.from_list(rows)


def judged(
    server: LoopbackBatchServer, pairs: Dataset, rubric: str, batch: bool, folder: Path, orders: str
):
    spec = OpenAIJudgeConfig(
        name="priced",
        model="judge-model",
        base_url=server.openai_url,
        api_key_env=None,
        rubric=rubric,
        max_concurrency=16,
        price=PRICE,
        batch={"enabled": batch},
    )
    cfg = JudgeConfig(judges=[spec], orders=orders)
    before, start = server.requests, time.perf_counter()
    submitted = sum(server.submitted.values())
    with JudgmentStore(folder / "judgments.sqlite") as store:
        rows = judge(pairs, cfg, store=store, budget=Budget(), batch_dir=folder / "batches")
        while "pending" in rows["status"]:  # the next night collects (adaptive: and asks more)
            server.complete_batches()
            rows = judge(pairs, cfg, store=store, budget=Budget(), batch_dir=folder / "batches")
    calls = server.requests - before if not batch else sum(server.submitted.values()) - submitted
    seconds = time.perf_counter() - start
    prefs = aggregate(rows, AggregateConfig())
    cost = sum({k: c or 0.0 for k, c in zip(rows["key"], rows["cost_usd"], strict=True)}.values())
    return {
        "calls": calls,
        "cost_usd": round(cost, 4),
        "preferences": len(prefs),
        "preferences_per_usd": round(len(prefs) / cost, 1) if cost else None,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=1000, help="simulated and served")
    parser.add_argument("--answers", type=int, default=4)
    parser.add_argument("--permutations", type=int, default=2)
    args = parser.parse_args()
    quiet()
    logging.disable(logging.WARNING)
    datasets.disable_progress_bars()
    print(f"accuracy, {args.prompts} prompts x {args.answers} answers (simulated judges):")
    accuracy = accuracy_kept(args.prompts, args.answers, args.permutations)
    print(f"a night on the loopback server, {args.prompts} prompts x {args.answers} answers:")
    pairs = night(args.prompts, args.answers)
    sides = {
        "pairwise_both_orders_online": ("helpful_harmless_json", False, "both"),
        "listwise_online": ("listwise_helpful_json", False, "both"),
        "listwise_provider_batches": ("listwise_helpful_json", True, "both"),
        "listwise_adaptive_provider_batches": ("listwise_helpful_json", True, "adaptive"),
    }
    served = {}
    with LoopbackBatchServer() as server, tempfile.TemporaryDirectory() as tmp:
        for name, (rubric, batch, orders) in sides.items():
            served[name] = judged(server, pairs, rubric, batch, Path(tmp) / name, orders)
            got = served[name]
            print(
                f"  {name:<28} {got['calls'] / args.prompts:5.2f} calls/prompt  "
                f"${got['cost_usd']:.4f}  {got['preferences']} preferences  "
                f"{got['preferences_per_usd']} per $  ({got['seconds']} s)",
                flush=True,
            )
    base = served["pairwise_both_orders_online"]
    ratios = {
        "calls_pairwise_over_listwise": round(
            base["calls"] / served["listwise_online"]["calls"], 2
        ),
        "preferences_per_usd_listwise_batches_over_pairwise": round(
            served["listwise_provider_batches"]["preferences_per_usd"]
            / base["preferences_per_usd"],
            2,
        ),
        "preferences_per_usd_listwise_adaptive_batches_over_pairwise": round(
            served["listwise_adaptive_provider_batches"]["preferences_per_usd"]
            / base["preferences_per_usd"],
            2,
        ),
        "accuracy_kept_min": min(v["kept"] for v in accuracy.values()),
        "adaptive_accuracy_kept_min": min(v["adaptive_kept"] for v in accuracy.values()),
    }
    print("  " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    print(json.dumps({"benchmark": "listwise", "accuracy": accuracy, "served": served, **ratios}))


if __name__ == "__main__":
    main()
