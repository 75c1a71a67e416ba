"""How much each debiasing step recovers, on simulated judges with known biases.

Synthetic pairs with a known truth (``rlaif.testing.simulated``), judged by noisy judges
with a position bias, a length bias, or neither; the accuracy of the preferences (share
whose chosen answer is truly better) for the raw and the debiased aggregation, side by
side. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import json
import logging

import datasets

from rlaif.config import AggregateConfig
from rlaif.stages import aggregate
from rlaif.testing.simulated import SimulatedJudge, simulate


def accuracy(sim, judgments, **cfg) -> tuple[float, int]:
    out = aggregate(judgments, AggregateConfig(**cfg))
    return round(sim.accuracy(out), 3), len(out)


def main() -> None:
    logging.disable(logging.INFO)
    datasets.disable_progress_bars()
    figures = {}
    for soft in (True, False):
        sim = simulate([SimulatedJudge(position_bias=1.5, soft=soft)], prompts=500)
        first = sim.judgments.filter(lambda r: r["order"] == "ab")
        kind = "soft" if soft else "hard"
        figures[f"position_{kind}"] = {
            "one_order": accuracy(sim, first, ties="keep"),
            "both_orders": accuracy(sim, sim.judgments, ties="keep"),
            "both_orders_ties_dropped": accuracy(sim, sim.judgments, ties="drop"),
        }
    sim = simulate([SimulatedJudge(length_bias=1.5)], prompts=500)
    figures["length"] = {
        "raw": accuracy(sim, sim.judgments, ties="keep"),
        "length_corrected": accuracy(sim, sim.judgments, ties="keep", length_correction=True),
    }
    sim = simulate([SimulatedJudge(skill=1.0)], prompts=500, responses=6)
    figures["many_responses"] = {
        "all_pairs": accuracy(sim, sim.judgments, ties="keep"),
        "best_vs_worst": accuracy(sim, sim.judgments, ties="keep", selection="best_vs_worst"),
    }
    for name, rows in figures.items():
        print(name, "  ".join(f"{k}: {acc} ({n} prefs)" for k, (acc, n) in rows.items()))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
