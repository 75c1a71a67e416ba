"""Asking judges durably, for the judge stage, evaluation, judge-eval and live rewards.

Each request is keyed by a hash of the judge's identity and the exact rendered input
(:mod:`rlaif.judging.plan`). Answers already in the store are reused; each new one is
committed the moment it arrives, so a crash re-asks only the calls in flight and Ctrl-C
(which lets those finish) none. Runs sharing the store claim keys before asking them
(:mod:`rlaif.judging.claims`): a key another live run is asking is waited for, not paid
twice. A failed judgment is asked again on the next run, until it has failed
``judge.max_failures`` times. Calls go online, through a provider's batch API
(:mod:`rlaif.judging.batch_run`) or through Ray actors, always under one budget.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset

from rlaif.config import JudgeConfig
from rlaif.debias import cascade
from rlaif.debias.adaptive_orders import (
    bias_sample,
    first_order,
    other,
    unsure_lists,
    unsure_pairs,
)
from rlaif.errors import ConfigError
from rlaif.executors.config import RayConfig
from rlaif.judges import Budget, Judge, JudgeRequest, build_judge
from rlaif.judging.batch_run import BatchRun
from rlaif.judging.checklists import checklist_rows
from rlaif.judging.listwise import groups_of
from rlaif.judging.online import judge_online
from rlaif.judging.plan import Task, keyed, plan, plan_listwise, plan_requests
from rlaif.judging.rows import judgment_rows
from rlaif.judging.schema import pair_columns
from rlaif.judging.store import JudgmentStore

log = logging.getLogger(__name__)


def judge(
    pairs: Dataset,
    cfg: JudgeConfig,
    *,
    store: JudgmentStore,
    budget: Budget | None = None,
    batch_dir: Path | None = None,
    ray: RayConfig | None = None,
    backends: dict[str, Judge] | None = None,
) -> Dataset:
    """One row per (pair, judge, order), with ``p_a`` = P(response_a wins) in the pair's order.

    Requests the budget did not allow are rows with status ``skipped`` (no call was made, and
    a later run asks them). Judges with ``batch.enabled`` go through the provider's batch API,
    recording their batches under ``batch_dir``; requests awaiting a batch are rows with
    status ``pending`` (a later run collects them). Without ``batch_dir`` (evaluation, which
    needs its answers now) they are judged online. Ctrl-C stops new calls, stores what is in
    flight, and raises ``KeyboardInterrupt``; a store that refuses a write (a full disk)
    stops new calls the same way and raises ``DiskFullError``. With ``ray`` the online calls
    are made by Ray actors (:mod:`rlaif.executors.ray_data`); what is asked and stored is
    decided here.
    ``backends`` are ``cfg``'s judges already built, for a caller that judges again and again
    (a live reward).
    """
    records = pairs.select_columns(pair_columns(pairs.column_names)).to_list()
    return Dataset.from_list(
        judge_records(
            records, cfg, store=store, budget=budget, batch_dir=batch_dir, ray=ray,
            backends=backends,
        )
    )  # fmt: skip


def judge_records(
    records: list[dict],
    cfg: JudgeConfig,
    *,
    store: JudgmentStore,
    budget: Budget | None = None,
    batch_dir: Path | None = None,
    ray: RayConfig | None = None,
    backends: dict[str, Judge] | None = None,
) -> list[dict]:
    """:func:`judge` over pair records (dicts with the pair columns), one dict per row out:
    what a live reward asks many times a step, without building datasets."""
    budget = budget or Budget(cfg.max_cost_usd)
    if backends is None:
        backends = {spec.name: build_judge(spec) for spec in cfg.judges}
    escalate_to = escalation_judge(cfg, backends)
    items_judge = checklist_items_judge(cfg, backends)
    strong = cascade_judge(cfg, backends)
    asker = _Asker(records, cfg, store, budget, batch_dir, ray)
    out: list[dict] = []
    unsure_rows: set[int] = set()
    with _finish_in_flight_on_interrupt(budget):
        for name, backend in backends.items():
            if name in (escalate_to, items_judge, strong):
                continue
            if backend.mode == "checklist":
                items = backends[items_judge] if items_judge is not None else None
                rows = checklist_rows(backend, items, records, cfg, store, asker.answers)
                out += rows
            elif cfg.orders == "adaptive" and backend.mode == "pairwise":
                rows, unsure_of = _judge_adaptively(backend, asker)
                out += rows
                unsure_rows |= unsure_of
            elif cfg.orders == "adaptive" and backend.mode == "listwise":
                out += _rank_adaptively(backend, asker)
            else:
                tasks = plan_requests(backend, records, cfg.orders, cfg.seed, cfg.permutations)
                out += asker(backend, tasks)
        if escalate_to is not None:
            wanted = [(r, other(first_order(records[r]["pair_id"], cfg.seed))) for r in unsure_rows]
            escalated = backends[escalate_to]
            out += asker(escalated, plan(escalated, records, sorted(wanted)))
        if strong is not None:
            out = _ask_unsure(backends[strong], out, asker)
    if budget.halted is not None:
        raise budget.halted
    if budget.interrupted:
        raise KeyboardInterrupt("judging interrupted; every answer received is stored")
    if budget.exhausted():
        log.warning(
            "judge: budget max_cost_usd=%s reached after $%.4f; calls not made are "
            "'skipped' and will be asked on the next run",
            cfg.max_cost_usd,
            budget.spent,
        )
    return out


def _ask_unsure(strong: Judge, rows: list[dict], asker: _Asker) -> list[dict]:
    """``judge.cascade``: the strong judge asked about the pairs the other judges' ``rows``
    leave unsure (in the orders the stage asks), and every row marked with whether it decides
    its pair (``decides``: the strong judge's rows where it answered, the others' elsewhere)."""
    unsure, wanted = _unsure(rows, asker.records, asker.cfg)
    log.info(
        "judge %s: %d of %d pairs unsure after the other judges; asking it about those",
        strong.name,
        len(unsure),
        len({r["pair_id"] for r in rows}),
    )
    rows = rows + asker(strong, plan(strong, asker.records, wanted))
    for row, decides in zip(rows, cascade.decided(rows, strong.name), strict=True):
        row["decides"] = decides
    return rows


def cascade_calls(
    backends: dict[str, Judge], records: list[dict], cfg: JudgeConfig, store: JudgmentStore
) -> int | None:
    """The calls the strong judge of ``judge.cascade`` has still to make, from the other
    judges' stored answers alone (a dry run asks nothing). None while any of theirs is still
    to be asked, or under ``orders: adaptive`` or with a checklist judge, whose rows this does
    not replay."""
    assert cfg.cascade is not None
    strong = backends[cfg.cascade.strong]
    rows: list[dict] = []
    for name, backend in backends.items():
        if name == strong.name:
            continue
        if cfg.orders == "adaptive" or backend.mode not in ("pairwise", "listwise", "pointwise"):
            return None
        tasks = plan_requests(backend, records, cfg.orders, cfg.seed, cfg.permutations)
        stored = store.get_many(t.key for t in tasks)
        if any(due(stored.get(t.key), cfg.max_failures) for t in tasks):
            return None
        results = [(t, stored[t.key], True) for t in tasks]
        rows += judgment_rows(records, backend, results)
    tasks = plan(strong, records, _unsure(rows, records, cfg)[1])
    stored = store.get_many(t.key for t in tasks)
    return len({t.key for t in tasks if due(stored.get(t.key), cfg.max_failures)})


def _unsure(
    rows: list[dict], records: list[dict], cfg: JudgeConfig
) -> tuple[set[str], list[tuple[int, str]]]:
    """The pairs ``rows`` leave unsure under ``judge.cascade``, and the (row, order) items a
    strong judge is asked about them."""
    rule = cfg.cascade
    unsure = cascade.unsure_pairs(
        rows, threshold=rule.threshold, flips=rule.flips, disagreement=rule.disagreement
    )
    wanted = [
        (row, order)
        for row, rec in enumerate(records)
        if rec["pair_id"] in unsure
        for order in _orders(rec["pair_id"], cfg)
    ]
    return unsure, wanted


def _orders(pair_id: str, cfg: JudgeConfig) -> tuple[str, ...]:
    """The orders a pair is shown in to a judge asked about it alone."""
    if cfg.orders == "original":
        return ("ab",)
    if cfg.orders == "random":
        return (first_order(pair_id, cfg.seed),)
    return ("ab", "ba")


def escalation_judge(cfg: JudgeConfig, backends: dict[str, Judge]) -> str | None:
    """The judge unsure pairs escalate to under ``orders: adaptive``, checked to be pairwise
    (``backends``: every judge of ``cfg`` by name)."""
    name = cfg.adaptive.escalate_to if cfg.orders == "adaptive" else None
    if name is not None and backends[name].mode != "pairwise":
        raise ConfigError(
            f"judge.adaptive.escalate_to: judge '{name}' uses a pointwise rubric; escalation "
            "asks a pairwise judge about the pairs others were unsure of"
        )
    return name


def cascade_judge(cfg: JudgeConfig, backends: dict[str, Judge]) -> str | None:
    """The strong judge of ``judge.cascade``, checked to compare pairs."""
    name = cfg.cascade.strong if cfg.cascade is not None else None
    if name is not None and backends[name].mode != "pairwise":
        raise ConfigError(
            f"judge.cascade.strong: judge '{name}' uses a {backends[name].mode} rubric; the "
            "strong judge of a cascade compares the pairs the others leave unsure (a "
            "pairwise rubric)"
        )
    return name


def checklist_items_judge(cfg: JudgeConfig, backends: dict[str, Judge]) -> str | None:
    """``judge.checklists.items_judge``, checked to judge checklist items (and to be the only
    judge that does)."""
    name = cfg.checklists.items_judge
    stray = [n for n, b in backends.items() if b.mode == "checklist_items" and n != name]
    if stray:
        raise ConfigError(
            f"judge '{stray[0]}' has a checklist_items rubric, which judges the items of a "
            "checklist judge's checklists: name it in judge.checklists.items_judge"
        )
    if name is not None and backends[name].mode != "checklist_items":
        raise ConfigError(
            f"judge.checklists.items_judge: judge '{name}' has a {backends[name].mode} rubric; "
            "it needs a checklist_items one (e.g. checklist_items)"
        )
    writers = [b for b in backends.values() if b.mode == "checklist" and b.rubric is not None]
    if writers and name is None:
        raise ConfigError(
            f"judge '{writers[0].name}' writes checklists with {writers[0].rubric.path}, whose "
            "items a judge must settle: add a judge with a checklist_items rubric and name it "
            "in judge.checklists.items_judge"
        )
    return name


@dataclass
class _Asker:
    """Judges planned requests: the cached answers are reused, the rest asked, and one row
    returned per request."""

    records: list[dict]
    cfg: JudgeConfig
    store: JudgmentStore
    budget: Budget
    batch_dir: Path | None
    ray: RayConfig | None

    def __call__(self, backend: Judge, tasks: list[Task]) -> list[dict]:
        return judgment_rows(self.records, backend, self.answers(backend, tasks))

    def answers(self, backend: Judge, tasks: list[Task]) -> list[tuple[Task, dict, bool]]:
        """Each task's stored record, asked first where due, and whether the store already
        had its answer."""
        known = self.store.get_many(t.key for t in tasks)
        max_failures = self.cfg.max_failures
        todo = list({t.key: t for t in tasks if due(known.get(t.key), max_failures)}.values())
        log.info(
            "judge %s: %d requests, %d cached, %d to judge",
            backend.name,
            len(tasks),
            len(tasks) - len(todo),
            len(todo),
        )
        awaited = dispatch(
            backend,
            todo,
            store=self.store,
            budget=self.budget,
            batch_dir=self.batch_dir,
            ray=self.ray,
        )
        stored = self.store.get_many(t.key for t in tasks)
        return [
            (
                t,
                _result(t, stored, awaited, self.budget),
                t.key in known and known[t.key]["status"] != "error",
            )
            for t in tasks
        ]


def dispatch(
    backend: Judge,
    todo: list[Task],
    *,
    store: JudgmentStore,
    budget: Budget,
    batch_dir: Path | None,
    ray: RayConfig | None = None,
) -> dict[str, str]:
    """Answer ``todo`` into ``store``; returns the keys left awaiting a provider batch (with
    their batch ids). Through the provider's batch API when the judge has one enabled and
    the caller keeps batch records (``batch_dir``; evaluation needs its answers now); else
    online, every answer stored as it arrives, asked here or, with ``ray``, by Ray actors."""
    if backend.provider_batches and batch_dir is not None:
        return BatchRun(backend, store=store, budget=budget, batch_dir=batch_dir).run(todo)
    judge_online(backend, todo, store=store, budget=budget, ray=ray)
    return {}


def ask(
    backend: Judge,
    requests: list[JudgeRequest],
    *,
    store: JudgmentStore,
    budget: Budget,
    max_failures: int,
) -> list[dict | None]:
    """Requests that are not a dataset's pairs (the judge audit's attacks), asked as the
    stage asks: keyed, answers in ``store`` reused, new ones stored as they arrive, under
    ``budget``. The stored record of each request; None where the budget stopped the call."""
    identity = backend.identity()
    tasks = [keyed(backend, identity, i, "ab", r) for i, r in enumerate(requests)]
    known = store.get_many(t.key for t in tasks)
    todo = list({t.key: t for t in tasks if due(known.get(t.key), max_failures)}.values())
    dispatch(backend, todo, store=store, budget=budget, batch_dir=None)
    stored = store.get_many(t.key for t in tasks)
    return [stored.get(t.key) for t in tasks]


def _judge_adaptively(backend: Judge, asker: _Asker) -> tuple[list[dict], set[int]]:
    """``orders: adaptive`` for one judge: the bias sample in both orders and every other
    pair once, then the other order of the unsure ones (unless they escalate). Returns the
    rows and the unsure pairs' row numbers."""
    records, cfg = asker.records, asker.cfg
    firsts = [first_order(rec["pair_id"], cfg.seed) for rec in records]
    sample = bias_sample([rec["pair_id"] for rec in records], cfg.adaptive.bias_sample, cfg.seed)
    wanted = [
        (row, order)
        for row, rec in enumerate(records)
        for order in (("ab", "ba") if rec["pair_id"] in sample else (firsts[row],))
    ]
    rows = asker(backend, plan(backend, records, wanted))
    answers: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["status"] == "ok" and r["p_first"] is not None:
            answers.setdefault(r["pair_id"], {})[r["order"]] = r["p_first"]
    bias, unsure = unsure_pairs(answers, sample, cfg.adaptive.threshold, cfg.seed)
    unsure_rows = {row for row, rec in enumerate(records) if rec["pair_id"] in unsure}
    log.info(
        "judge %s: position bias %+.3f on %d pairs asked in both orders; %d of %d first "
        "answers unsure%s",
        backend.name,
        bias,
        len(sample),
        len(unsure_rows),
        len(records) - len(sample),
        f" (escalated to {cfg.adaptive.escalate_to})" if cfg.adaptive.escalate_to else "",
    )
    if cfg.adaptive.escalate_to is None:
        second = sorted((row, other(firsts[row])) for row in unsure_rows)
        rows += asker(backend, plan(backend, records, second))
    return rows, unsure_rows


def _rank_adaptively(backend: Judge, asker: _Asker) -> list[dict]:
    """``orders: adaptive`` for a listwise judge: the bias sample's prompts in every order
    shown, every other prompt in its first, then in its other orders only where a pair's
    verdict in that first list is unsure (:func:`unsure_lists`)."""
    records, cfg = asker.records, asker.cfg
    tasks = plan_listwise(backend, records, cfg.permutations, cfg.seed)
    groups = groups_of(records)
    prompts = [str(records[g.rows[0]]["prompt_id"]) for g in groups]
    sample = bias_sample(prompts, cfg.adaptive.bias_sample, cfg.seed)
    first = {t.row: t.key for t in reversed(tasks)}  # each prompt's first order shown
    rows = asker(backend, [t for t in tasks if prompts[t.row] in sample or first[t.row] == t.key])
    ok = [r for r in rows if r["status"] == "ok"]
    bias, unsure = unsure_lists(ok, sample, cfg.adaptive.threshold)
    log.info(
        "judge %s: first-place bias %+.3f on %d prompts shown in every order; %d of %d "
        "prompts unsure after their first order",
        backend.name,
        bias,
        len(sample),
        len(unsure),
        len(groups) - len(sample),
    )
    again = [t for t in tasks if prompts[t.row] in unsure and first[t.row] != t.key]
    return rows + asker(backend, again)


def due(record: dict | None, max_failures: int) -> bool:
    """Whether a key must be asked: never answered, or failed fewer than ``max_failures``
    times."""
    if record is None:
        return True
    return record["status"] == "error" and (record.get("failures") or 0) < max_failures


@contextlib.contextmanager
def _finish_in_flight_on_interrupt(budget: Budget) -> Iterator[None]:
    """The first Ctrl-C stops new calls and lets those in flight finish and be stored (the
    money is spent, the answer must not be lost); a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if budget.interrupted:
            raise KeyboardInterrupt
        budget.interrupted = True
        log.warning(
            "interrupted: finishing the judgments in flight, then stopping "
            "(Ctrl-C again to stop at once; those would be asked again)"
        )

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _result(task: Task, stored: dict[str, dict], awaited: dict[str, str], budget: Budget) -> dict:
    """The stored answer; else ``pending`` when a provider batch will bring one (a stored
    error is being asked again there); else ``skipped``."""
    rec = stored.get(task.key)
    if task.key in awaited and (rec is None or rec["status"] == "error"):
        return {
            "key": task.key,
            "status": "pending",
            "prompt_hash": task.prompt_hash,
            "error": f"awaiting provider batch {awaited[task.key]}; re-run to collect",
        }
    return rec or _skipped(task, budget)


def _skipped(task: Task, budget: Budget) -> dict:
    return {
        "key": task.key,
        "status": "skipped",
        "prompt_hash": task.prompt_hash,
        "error": f"not asked: budget max_cost_usd={budget.max_cost_usd} reached",
    }
