"""A cascade from a cheap judge to a strong one, on simulated judges with a known truth.

Both simulated judges answer every pair in both orders (``rlaif.testing.simulated``): a cheap
one, noisier and more position-biased, and a strong one. The cascade's rules
(``rlaif.debias.cascade.select``, the ones ``judge.cascade`` runs) then keep the strong
judge's answers only for the pairs the cheap one leaves unsure, so the strong judge alone and
the cascade are scored on the same answers. For a few thresholds it prints the accuracy kept
(the cascade's over the strong judge's), the strong judge's calls as a share of asking it
about every pair, and the cost a night at list prices (a cheap model at $0.15 / $0.60 and a
strong one at $3 / $15 per million tokens, 600 input and 20 output tokens a call). Goal:
98% of the strong judge's accuracy or more with 40% of its calls or fewer. Two cheap judges: twice
the strong judge's noise and 2.5x its position bias, and four times and 5x. The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging

import datasets

from rlaif.config import AggregateConfig
from rlaif.debias.cascade import select, unsure_pairs
from rlaif.stages import aggregate
from rlaif.testing.simulated import SimulatedJudge, Simulation, simulate

THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25)
CALL_USD = {
    "cheap": (600 * 0.15 + 20 * 0.60) / 1e6,
    "strong": (600 * 3.0 + 20 * 15.0) / 1e6,
}


def accuracy(sim: Simulation, rows: list[dict]) -> float:
    return sim.accuracy(aggregate(datasets.Dataset.from_list(rows), AggregateConfig(ties="keep")))


CHEAP = {
    "noisier": SimulatedJudge(name="cheap", skill=2.0, noise=1.0, position_bias=0.5),
    "much_noisier": SimulatedJudge(name="cheap", skill=2.0, noise=2.0, position_bias=1.0),
}
"""Cheap judges: twice and four times the strong judge's noise, with 2.5x and 5x its bias."""
STRONG = SimulatedJudge(name="strong", skill=2.0, noise=0.5, position_bias=0.2)


def sweep(sim: Simulation) -> dict:
    rows = sim.judgments.to_list()
    pairs = len({r["pair_id"] for r in rows})
    alone = {name: accuracy(sim, [r for r in rows if r["judge"] == name]) for name in CALL_USD}
    strong_usd = 2 * pairs * CALL_USD["strong"]
    print(
        f"  strong judge alone {alone['strong']:.4f} (${strong_usd:.2f}), cheap alone "
        f"{alone['cheap']:.4f} (${2 * pairs * CALL_USD['cheap']:.2f})"
    )
    points = {}
    for threshold in THRESHOLDS:
        for flips in (True, False):
            rule = {"threshold": threshold, "flips": flips}
            unsure = unsure_pairs([r for r in rows if r["judge"] == "cheap"], **rule)
            got = accuracy(sim, select(rows, "strong", **rule))
            calls = len(unsure) / pairs
            usd = 2 * pairs * CALL_USD["cheap"] + 2 * len(unsure) * CALL_USD["strong"]
            name = f"{threshold}{'' if flips else ' no-flips'}"
            points[name] = {
                "accuracy": round(got, 4),
                "kept": round(got / alone["strong"], 4),
                "strong_calls": round(calls, 4),
                "cost_usd": round(usd, 2),
                "cost_share": round(usd / strong_usd, 4),
            }
            p = points[name]
            print(
                f"  threshold {name:<14} accuracy {got:.4f} (kept {p['kept']:.3f})  strong "
                f"judge's calls {calls:.1%}  ${usd:.2f} ({p['cost_share']:.0%} of strong alone)"
            )
    meets = [n for n, p in points.items() if p["kept"] >= 0.98 and p["strong_calls"] <= 0.40]
    best = min(meets, key=lambda n: points[n]["strong_calls"], default=None)
    print(
        f"  goal (kept >= 0.98 with <= 40% of the calls): {'met at ' + best if best else 'not met'}"
    )
    return {
        "strong_alone": round(alone["strong"], 4),
        "cheap_alone": round(alone["cheap"], 4),
        "points": points,
        "goal_met_at": best,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--answers", type=int, default=4)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    datasets.disable_progress_bars()
    figures = {"benchmark": "cascade"}
    for name, cheap in CHEAP.items():
        print(f"{name} cheap judge, {args.prompts} prompts x {args.answers} answers:")
        sim = simulate([cheap, STRONG], prompts=args.prompts, responses=args.answers)
        figures[name] = sweep(sim)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
