"""Calls against accuracy for ``judge.orders: adaptive``, on simulated judges with a known truth.

Each simulated judge answers every pair in both orders (``rlaif.testing.simulated``); the
adaptive rules then pick the rows a run would have asked (``rlaif.debias.adaptive_orders.select``),
so both-orders and adaptive accuracy come from the same answers. For a few thresholds it
prints the share of both orders' calls asked and the accuracy kept (adaptive accuracy over
both-orders accuracy); then escalation of unsure pairs to a stronger judge. The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging

import datasets

from rlaif.config import AggregateConfig
from rlaif.debias.adaptive_orders import select
from rlaif.stages import aggregate
from rlaif.testing.simulated import SimulatedJudge, Simulation, simulate

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def accuracy(sim: Simulation, judgments) -> float:
    table = datasets.Dataset.from_pandas(judgments, preserve_index=False)
    return sim.accuracy(aggregate(table, AggregateConfig(ties="keep")))


def curve(sim: Simulation, bias_share: float, escalate_to: str | None = None) -> dict:
    table = sim.judgments.to_pandas()
    primary = table[table["judge"] != escalate_to]
    both = accuracy(sim, primary)
    points = {}
    for threshold in THRESHOLDS:
        asked = select(table, threshold=threshold, bias_share=bias_share, escalate_to=escalate_to)
        points[str(threshold)] = {
            "calls": round(len(asked) / len(primary), 3),
            "accuracy": round(accuracy(sim, asked), 4),
            "kept": round(accuracy(sim, asked) / both, 3),
        }
    return {"both_orders_accuracy": round(both, 4), "thresholds": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--bias-sample", type=float, default=0.05)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    datasets.disable_progress_bars()
    biased = SimulatedJudge(name="biased", position_bias=1.5)
    judges = {
        "soft_position_biased": [biased],
        "soft_unbiased": [SimulatedJudge(name="fair")],
        "escalate_to_stronger": [biased, SimulatedJudge(name="strong", skill=4.0, noise=0.5)],
    }
    figures = {}
    for name, panel in judges.items():
        sim = simulate(panel, prompts=args.prompts)
        escalate_to = "strong" if name == "escalate_to_stronger" else None
        figures[name] = curve(sim, args.bias_sample, escalate_to)
        print(f"{name}: both orders accuracy {figures[name]['both_orders_accuracy']}")
        for threshold, point in figures[name]["thresholds"].items():
            print(
                f"  threshold {threshold:<5} calls {point['calls']:.3f} of both orders'  "
                f"accuracy {point['accuracy']:.4f} ({point['kept']:.3f} of both orders')"
            )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
