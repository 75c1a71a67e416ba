"""Aggregation and Bradley-Terry over a million judgments, timed.

Synthetic judgments (``rlaif.testing.simulated``: 5 responses a prompt, every pair in both
orders) are generated first, untimed; then the aggregate stage runs with ``all_pairs`` and
with ``best_vs_worst`` (a Bradley-Terry fit per prompt). The last line printed is one JSON
object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import datasets

from rlaif.config import AggregateConfig
from rlaif.stages import aggregate
from rlaif.testing.simulated import SimulatedJudge, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--responses", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    datasets.disable_progress_bars()
    per_prompt = args.responses * (args.responses - 1)  # pairs x 2 orders
    prompts = max(1, args.judgments // per_prompt)
    start = time.perf_counter()
    sim = simulate(
        [SimulatedJudge(position_bias=0.5)],
        prompts=prompts,
        responses=args.responses,
        min_len=10,
        max_len=60,
    )
    generated = time.perf_counter() - start
    timings = {}
    for selection in ("all_pairs", "best_vs_worst"):
        start = time.perf_counter()
        out = aggregate(sim.judgments, AggregateConfig(ties="keep", selection=selection))
        timings[selection] = (time.perf_counter() - start, len(out))
    figures = {
        "judgments": len(sim.judgments),
        "prompts": prompts,
        "seconds": round(max(t for t, _ in timings.values()), 2),
        "all_pairs_seconds": round(timings["all_pairs"][0], 2),
        "all_pairs_preferences": timings["all_pairs"][1],
        "best_vs_worst_seconds": round(timings["best_vs_worst"][0], 2),
        "best_vs_worst_preferences": timings["best_vs_worst"][1],
        "generation_seconds": round(generated, 1),
    }
    print(
        f"{figures['judgments']} judgments: all_pairs {figures['all_pairs_seconds']} s, "
        f"best_vs_worst (Bradley-Terry) {figures['best_vs_worst_seconds']} s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
