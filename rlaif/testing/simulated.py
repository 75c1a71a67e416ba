"""Synthetic judgments with a known truth, from judges with a chosen position and length bias.

Each response has a true quality; a simulated judge says the first-shown answer wins with
probability sigmoid(skill * (q_first - q_second) + position_bias + length_bias * (len_first -
len_second) / 100 + noise), the noise Gaussian. Used by the debiasing tests and benchmarks:
the truth is known, so every aggregation choice can be scored.

A simulated listwise judge (:func:`simulate_listwise`) sees all of a prompt's answers at once:
each shown answer's logit is skill * quality + a position bias falling linearly from the
first place to the last + the length bias + noise; it reports each one's chance of being the
best (a softmax, as label probabilities give it) or a hard ranking. With two answers this is
the pairwise judge above, so the two can be compared like for like.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from rlaif.judging.listwise import groups_of, pair_verdicts, shown_orders


@dataclass(frozen=True)
class SimulatedJudge:
    name: str = "sim"
    skill: float = 2.0
    position_bias: float = 0.0
    length_bias: float = 0.0
    noise: float = 1.0
    """Standard deviation of Gaussian noise on each judgment's logit."""
    soft: bool = True
    """Report P(first wins) (a logprob judge); False reports a sampled hard verdict."""


@dataclass(frozen=True)
class Simulation:
    judgments: Dataset
    quality: dict[tuple[str, int], float]
    """True quality of each (prompt_id, response index)."""

    def accuracy(self, preferences: Dataset) -> float:
        """Share of preferences whose chosen response is truly the better one."""
        hits = []
        for pair_id, chosen in zip(preferences["pair_id"], preferences["chosen"], strict=True):
            prompt_id, ij = pair_id.rsplit(":", 1)
            i, j = (int(x) for x in ij.split("-"))
            winner = _index(chosen[0]["content"])
            loser = j if winner == i else i
            hits.append(self.quality[(prompt_id, winner)] > self.quality[(prompt_id, loser)])
        return float(np.mean(hits)) if hits else float("nan")


def simulate(
    judges: list[SimulatedJudge],
    *,
    prompts: int = 300,
    responses: int = 4,
    orders: str = "both",
    min_len: int = 20,
    max_len: int = 400,
    seed: int = 0,
) -> Simulation:
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=(prompts, responses))
    lengths = rng.integers(min_len, max_len, size=(prompts, responses))
    combos = list(itertools.combinations(range(responses), 2))
    cols: dict[str, list] = {
        c: []
        for c in (
            "pair_id",
            "prompt_id",
            "prompt",
            "index_a",
            "index_b",
            "response_a",
            "response_b",
            "judge",
            "order",
            "status",
            "p_first",
            "p_a",
            "key",
            "rubric_id",
            "rubric_hash",
        )
    }
    for judge in judges:
        for p in range(prompts):
            pid = f"p{p}"
            for i, j in combos:
                shown = [("ab", i, j), ("ba", j, i)] if orders == "both" else [("ab", i, j)]
                for order, first, second in shown:
                    logit = (
                        judge.skill * (quality[p, first] - quality[p, second])
                        + judge.position_bias
                        + judge.length_bias * (lengths[p, first] - lengths[p, second]) / 100
                        + judge.noise * rng.normal()
                    )
                    prob = 1.0 / (1.0 + np.exp(-logit))
                    p_first = prob if judge.soft else float(rng.random() < prob)
                    cols["pair_id"].append(f"{pid}:{i}-{j}")
                    cols["prompt_id"].append(pid)
                    cols["prompt"].append(f"prompt {p}")
                    cols["index_a"].append(i)
                    cols["index_b"].append(j)
                    cols["response_a"].append(_text(pid, i, lengths[p, i]))
                    cols["response_b"].append(_text(pid, j, lengths[p, j]))
                    cols["judge"].append(judge.name)
                    cols["order"].append(order)
                    cols["status"].append("ok")
                    cols["p_first"].append(p_first)
                    cols["p_a"].append(p_first if order == "ab" else 1.0 - p_first)
                    cols["key"].append(f"{judge.name}:{pid}:{i}-{j}:{order}")
                    cols["rubric_id"].append("sim@1")
                    cols["rubric_hash"].append("0" * 64)
    return Simulation(
        Dataset.from_dict(cols),
        {(f"p{p}", r): float(quality[p, r]) for p in range(prompts) for r in range(responses)},
    )


def simulate_listwise(
    judge: SimulatedJudge,
    *,
    prompts: int = 300,
    responses: int = 4,
    permutations: int = 2,
    min_len: int = 20,
    max_len: int = 400,
    seed: int = 0,
) -> Simulation:
    """The same prompts, truth and lengths as :func:`simulate` with the same ``seed``, judged
    listwise: one call per prompt and order shown, turned into pair rows as the judge stage
    does (:func:`rlaif.judging.listwise.pair_verdicts`)."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=(prompts, responses))
    lengths = rng.integers(min_len, max_len, size=(prompts, responses))
    records = [
        {
            "pair_id": f"p{p}:{i}-{j}",
            "prompt_id": f"p{p}",
            "prompt": f"prompt {p}",
            "index_a": i,
            "index_b": j,
            "response_a": _text(f"p{p}", i, lengths[p, i]),
            "response_b": _text(f"p{p}", j, lengths[p, j]),
        }
        for p in range(prompts)
        for i, j in itertools.combinations(range(responses), 2)
    ]
    groups = groups_of(records)
    place = np.linspace(1.0, 0.0, responses)  # the position bias, first place to last
    rows = []
    for number, group in enumerate(groups):
        p = int(records[group.rows[0]]["prompt_id"][1:])
        for order in shown_orders(responses, permutations, [seed, p]):
            shown = np.array(order)
            logits = (
                judge.skill * quality[p, shown]
                + judge.position_bias * place
                + judge.length_bias * lengths[p, shown] / 100
                + judge.noise * rng.normal(size=responses)
            )
            if judge.soft:
                probs = np.exp(logits - logits.max())
                ranking = {"probs": (probs / probs.sum()).tolist()}
            else:
                ranking = {"points": logits.argsort().argsort().tolist()}
            key = f"{judge.name}:p{p}:{','.join(map(str, order))}"
            for row, shown_as, p_a in pair_verdicts(
                records, groups, number, tuple(order), json.dumps(ranking)
            ):
                rows.append(
                    {
                        **records[row],
                        "judge": judge.name,
                        "order": shown_as,
                        "status": "ok",
                        "p_first": None,
                        "p_a": p_a,
                        "key": key,
                        "rubric_id": "sim-listwise@1",
                        "rubric_hash": "0" * 64,
                    }
                )
    return Simulation(
        Dataset.from_list(rows),
        {(f"p{p}", r): float(quality[p, r]) for p in range(prompts) for r in range(responses)},
    )


def _text(prompt_id: str, index: int, length: int) -> str:
    head = f"{prompt_id}/{index} "
    return head + "x" * max(0, int(length) - len(head))


def _index(text: str) -> int:
    return int(text.split(" ", 1)[0].rsplit("/", 1)[1])
