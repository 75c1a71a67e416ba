"""Judgment rows from a judge's answers: one row per verdict on a pair.

A pairwise answer is one verdict on its pair in the order shown; a listwise answer ranks all
of a prompt's answers, so it judges every pair of the prompt; two pointwise scores (one per
answer) make one verdict on their pair. Each row carries the pair, who judged it in which
order, P(a wins), whether it came from the store, and the answer's record fields.
"""

from __future__ import annotations

from collections.abc import Iterator

from rlaif.judges import Judge
from rlaif.judging.listwise import groups_of, pair_verdicts
from rlaif.judging.plan import Task
from rlaif.judging.schema import RECORD_FIELDS


def judgment_rows(
    records: list[dict], backend: Judge, results: list[tuple[Task, dict, bool]]
) -> list[dict]:
    """One row per verdict on a pair (:func:`_verdicts`): the pair, who judged it in which
    order, P(a wins), whether it came from the store, and the answer's record fields."""
    return [
        {
            **records[row],
            "judge": backend.name,
            "order": order,
            "p_a": p_a,
            "cached": cached,
            **{k: rec.get(k) for k in RECORD_FIELDS},
        }
        for t, rec, cached, row, order, p_a in _verdicts(records, backend, results)
    ]


def _verdicts(
    records: list[dict], backend: Judge, results: list[tuple[Task, dict, bool]]
) -> Iterator[tuple[Task, dict, bool, int, str, float | None]]:
    """Each answer's verdicts on pairs: (task, record, cached, pair row, order shown,
    P(a wins)); a listwise answer judges every pair of its prompt."""
    if backend.mode == "listwise":
        groups = groups_of(records)
        for t, rec, cached in results:
            shown = tuple(int(i) for i in t.order.split(","))
            ranking = rec.get("ranking") if rec.get("status") == "ok" else None
            for row, order, p_a in pair_verdicts(records, groups, t.row, shown, ranking):
                # P(the one shown first wins), as a pair's row has it
                p_first = None if p_a is None else (p_a if order == "ab" else 1 - p_a)
                yield t, {**rec, "p_first": p_first}, cached, row, order, p_a
        return
    p_a_of = _pointwise_p_a(backend, results) if backend.mode == "pointwise" else None
    for t, rec, cached in results:
        if p_a_of is not None:
            p_a = p_a_of.get(t.row)
        else:
            p_first = rec.get("p_first")
            p_a = None if p_first is None else (p_first if t.order == "ab" else 1 - p_first)
        yield t, rec, cached, t.row, t.order, p_a


def _pointwise_p_a(backend: Judge, results: list[tuple[Task, dict, bool]]) -> dict[int, float]:
    """P(a wins) from two pointwise scores: 0.5 plus half the score difference as a share of
    the scale, so ``aggregate.min_margin`` reads as a minimum score gap (a 1-point gap on a
    1-5 scale is a margin of 0.25)."""
    scores = backend.rubric.scores
    span = max(scores) - min(scores)
    by_pair: dict[int, dict[str, float | None]] = {}
    for task, rec, _ in results:
        ok = rec.get("status") == "ok"
        by_pair.setdefault(task.row, {})[task.order] = rec.get("score") if ok else None
    out = {}
    for row, got in by_pair.items():
        a, b = got.get("a"), got.get("b")
        if a is not None and b is not None:
            out[row] = 0.5 + 0.5 * max(-1.0, min(1.0, (a - b) / span))
    return out
