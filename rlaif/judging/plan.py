"""Planning judge requests: every request rendered and keyed before any call, so a rubric
error surfaces before money is spent and a dry run can look the keys up in the store."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rlaif.debias.adaptive_orders import first_order
from rlaif.hashing import stable_hash
from rlaif.judges import Judge, JudgeRequest
from rlaif.judging.listwise import groups_of, shown_orders


@dataclass(frozen=True)
class Task:
    """One request of one judge: the pair's row, the order shown, the rendered request and
    its cache key (a hash of the judge's identity and the rendered input). Listwise: the
    prompt's group number and its answers in the order shown (``"2,0,1"``)."""

    row: int
    order: str
    request: JudgeRequest
    key: str
    prompt_hash: str


def plan_requests(
    backend: Judge, records: list[dict], orders: str, seed: int = 0, permutations: int = 2
) -> list[Task]:
    """Every request of ``orders`` (``adaptive``: both, the most it can ask), rendered with
    its cache key up front, so a rubric error surfaces before any call is made (and a dry
    run can look the keys up). A pointwise judge scores each answer on its own (orders ``a``
    and ``b``); an answer in several pairs is asked once. A listwise judge ranks each
    prompt's answers in ``permutations`` orders."""
    if backend.mode == "listwise":
        return plan_listwise(backend, records, permutations, seed)
    if backend.mode == "pointwise":
        shown: tuple[str, ...] | None = ("a", "b")
    else:
        shown = {"both": ("ab", "ba"), "adaptive": ("ab", "ba"), "original": ("ab",)}.get(orders)
    wanted = [
        (row, order)
        for row, rec in enumerate(records)
        for order in (shown or (first_order(rec["pair_id"], seed),))
    ]
    return plan(backend, records, wanted)


def plan(backend: Judge, records: list[dict], wanted: list[tuple[int, str]]) -> list[Task]:
    """The requests for (row, order) items: ``ab``/``ba`` show the pair in that order,
    ``a``/``b`` one answer alone."""
    identity = backend.identity()
    tasks = []
    for row, order in wanted:
        rec = records[row]
        first, second = {
            "ab": (rec["response_a"], rec["response_b"]),
            "ba": (rec["response_b"], rec["response_a"]),
            "a": (rec["response_a"], ""),
            "b": (rec["response_b"], ""),
        }[order]
        request = JudgeRequest(
            prompt=rec["prompt"], first=first, second=second, reference=rec.get("reference")
        )
        tasks.append(keyed(backend, identity, row, order, request))
    return tasks


def plan_listwise(backend: Judge, records: list[dict], permutations: int, seed: int) -> list[Task]:
    """One request per prompt and order shown (:mod:`rlaif.judging.listwise`)."""
    identity = backend.identity()
    tasks = []
    for number, group in enumerate(groups_of(records)):
        first = records[group.rows[0]]
        for order in shown_orders(len(group.answers), permutations, [seed, first["prompt_id"]]):
            request = JudgeRequest(
                prompt=first["prompt"],
                first="",
                second="",
                reference=first.get("reference"),
                responses=tuple(group.answers[i] for i in order),
            )
            tasks.append(keyed(backend, identity, number, ",".join(map(str, order)), request))
    return tasks


def keyed(backend: Judge, identity: dict, row: int, order: str, request: JudgeRequest) -> Task:
    """``request`` rendered by ``backend`` and keyed by its identity and the rendered input."""
    request = replace(request, rendered=backend.render(request))
    prompt_hash = stable_hash(request.rendered)
    key = stable_hash({"judge": identity, "input": prompt_hash})
    return Task(row, order, request, key, prompt_hash)
