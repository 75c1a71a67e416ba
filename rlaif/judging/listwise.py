"""Listwise judging: one call shows a prompt with all its answers and reads a ranking back.

A prompt's answers are shown in ``judge.permutations`` orders (a seeded shuffle, then its
reverse, then more seeded shuffles), one call each, so every answer's place in the list is
balanced as asking both orders balances a pair. Each call's ranking implies a verdict on
every pair of the prompt: P(a beats b) = p_a / (p_a + p_b) from the probabilities of being
the best (Luce's choice rule), or 1, 0 or 0.5 from a hard ranking. The pair's row records
order ``ab`` when a was shown before b, so aggregation reads listwise rows as it reads
pairwise ones: a mean over the calls (a soft Borda count over the implied pairs),
Bradley-Terry for ``best_vs_worst``, and the judge report's position bias.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

from rlaif.hashing import stable_hash


@dataclass
class Group:
    """One prompt's pairs (their record rows) and its distinct answers, by sample index."""

    rows: list[int] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)


def groups_of(records: list[dict]) -> list[Group]:
    """The records' pairs grouped by prompt, in the order prompts first appear. An answer is
    its text: the same text in two pairs is shown once, whatever indices the pairs give it."""
    groups: dict[str, tuple[Group, dict[str, tuple[int, int]]]] = {}
    for row, rec in enumerate(records):
        group, seen = groups.setdefault(str(rec["prompt_id"]), (Group(), {}))
        group.rows.append(row)
        for side in ("a", "b"):
            seen.setdefault(rec[f"response_{side}"], (rec[f"index_{side}"], len(seen)))
    for group, seen in groups.values():
        group.answers = sorted(seen, key=seen.__getitem__)
    return [group for group, _ in groups.values()]


def shown_orders(n: int, count: int, seed: object) -> list[tuple[int, ...]]:
    """``count`` distinct orders of ``n`` items (fewer when ``n!`` is smaller): a shuffle
    seeded by ``seed``, its reverse, then further seeded shuffles."""
    rng = random.Random(int(stable_hash(seed)[:16], 16))
    first = list(range(n))
    rng.shuffle(first)
    orders = [tuple(first), tuple(reversed(first))][: min(count, 2)]
    wanted = min(count, math.factorial(n))
    while len(set(orders)) < wanted:
        rng.shuffle(first)
        if tuple(first) not in orders:
            orders.append(tuple(first))
    return list(dict.fromkeys(orders))


def implied_p(ranking: str | None, first: int, second: int) -> float | None:
    """P(the answer shown at position ``first`` beats the one at ``second``) from a stored
    listwise ranking (see :class:`rlaif.judges.records.Verdict`); None without one."""
    if ranking is None:
        return None
    data = json.loads(ranking)
    if "probs" in data:
        a, b = data["probs"][first], data["probs"][second]
        return 0.5 if a + b <= 0 else a / (a + b)
    a, b = data["points"][first], data["points"][second]
    return 0.5 if a == b else float(a > b)


def pair_verdicts(
    records: list[dict],
    groups: list[Group],
    group: int,
    shown: tuple[int, ...],
    ranking: str | None,
) -> list[tuple[int, str, float | None]]:
    """For one call (``group``'s answers shown in the order ``shown``, numbers into its
    ``answers``): each pair's record row, the order its two answers were shown in, and P(a
    wins)."""
    answers = groups[group].answers
    position = {answers[number]: pos for pos, number in enumerate(shown)}
    out = []
    for row in groups[group].rows:
        a, b = position[records[row]["response_a"]], position[records[row]["response_b"]]
        out.append((row, "ab" if a < b else "ba", implied_p(ranking, a, b)))
    return out
