"""Cascades: a cheap judge (or panel) answers every pair, a strong judge only the pairs it
leaves unsure, and the strong judge's verdict decides those.

A pair is unsure when the cheap judges' P(a wins), averaged over their orders and judges, lies
within ``threshold`` of 0.5; when a judge picks another answer once the order is swapped (a
flip: its verdict is the position, not the answers); or, for a panel, when its judges pick
different answers. A pair none of them could answer (an unreadable or refused answer) is
unsure too; one still waiting (an error asked again, a batch not back) is not decided yet.
The same rules run on a stored table (:func:`select`), so a cascade's accuracy and the strong
judge's calls it saves can be measured where the truth is known (``rlaif judge-eval``,
``benchmarks/cascade.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

WAITING = ("error", "pending", "skipped")
"""Statuses a later run may still turn into a verdict: the pair is not decided yet."""


def unsure_pairs(
    rows: Iterable[Mapping[str, Any]],
    *,
    threshold: float,
    flips: bool = True,
    disagreement: bool = True,
) -> set[str]:
    """The pairs of ``rows`` (the cheap judges' judgment rows: ``pair_id``, ``judge``,
    ``order``, ``p_a``, ``status``) a strong judge should decide."""
    verdicts: dict[str, dict[str, dict[str, float]]] = {}
    waiting: set[str] = set()
    seen: set[str] = set()
    for r in rows:
        pid = r["pair_id"]
        seen.add(pid)
        if r["status"] in WAITING:
            waiting.add(pid)
        elif r["status"] == "ok" and r["p_a"] is not None:
            verdicts.setdefault(pid, {}).setdefault(r["judge"], {})[r["order"]] = r["p_a"]
    out = set()
    for pid in seen - waiting:
        judges = verdicts.get(pid)
        if not judges:  # every answer unreadable or refused
            out.add(pid)
            continue
        means = {name: sum(got.values()) / len(got) for name, got in judges.items()}
        close = abs(sum(means.values()) / len(means) - 0.5) < threshold
        flipped = flips and any(_flipped(got) for got in judges.values())
        split = disagreement and len({m > 0.5 for m in means.values() if m != 0.5}) > 1
        if close or flipped or split:
            out.add(pid)
    return out


def _flipped(got: dict[str, float]) -> bool:
    """Both orders answered, and each picks the answer shown first (or each the second)."""
    if {"ab", "ba"} - set(got):
        return False
    ab, ba = got["ab"], got["ba"]  # P(a wins) in each order
    return (ab - 0.5) * (ba - 0.5) < 0


def decided(rows: Iterable[Mapping[str, Any]], strong: str) -> list[bool]:
    """Which rows decide their pair: the strong judge's wherever it answered the pair, the
    others' elsewhere."""
    rows = list(rows)
    asked = {r["pair_id"] for r in rows if r["judge"] == strong}
    return [(r["judge"] == strong) == (r["pair_id"] in asked) for r in rows]


def select(rows: list[Mapping[str, Any]], strong: str, **rule: Any) -> list[Mapping[str, Any]]:
    """From a table where the strong judge answered every pair: the rows a cascade would have
    had (the cheap judges' everywhere, the strong judge's only where the cheap ones leave a
    pair unsure), and of those, the ones that decide each pair."""
    cheap = [r for r in rows if r["judge"] != strong]
    unsure = unsure_pairs(cheap, **rule)
    kept = cheap + [r for r in rows if r["judge"] == strong and r["pair_id"] in unsure]
    return [r for r, keep in zip(kept, decided(kept, strong), strict=True) if keep]
