"""Stage 3: every pair judged (in both orders by default) by every configured judge.

Each request is keyed by a hash of the judge's identity and the exact rendered input.
Answers already in the store are reused; each new one is committed the moment it arrives,
so a crash re-asks only the calls in flight and Ctrl-C (which lets those finish) none.
Runs sharing the store claim keys before asking them (:mod:`rlaif.claims`): a key another
live run is asking is waited for, not paid twice. A failed judgment is asked again on the
next run, until it has failed ``judge.max_failures`` times.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

from datasets import Dataset

from rlaif.batches.runner import BatchRun
from rlaif.claims import Claims
from rlaif.config import JudgeConfig
from rlaif.hashing import stable_hash
from rlaif.judges import Budget, JudgeBackend, JudgeRequest, Verdict, build_judge
from rlaif.progress import tqdm
from rlaif.stages.pair import PAIR_COLUMNS
from rlaif.store import JudgmentStore

log = logging.getLogger(__name__)
_VERDICT_FIELDS = tuple(f.name for f in fields(Verdict))
_RECORD_FIELDS = (
    *_VERDICT_FIELDS, "key", "rubric_id", "rubric_hash", "prompt_hash", "failures"
)  # fmt: skip
WAIT_POLL_S = 0.5
"""How often a run waiting on another run's answers looks at the store."""


@dataclass(frozen=True)
class _Task:
    row: int
    order: str
    request: JudgeRequest
    key: str
    prompt_hash: str


def judge(
    pairs: Dataset,
    cfg: JudgeConfig,
    *,
    store: JudgmentStore,
    budget: Budget | None = None,
    batch_dir: Path | None = None,
) -> Dataset:
    """One row per (pair, judge, order), with ``p_a`` = P(response_a wins) in the pair's order.

    Requests the budget did not allow are rows with status ``skipped`` (no call was made, and
    a later run asks them). Judges with ``batch.enabled`` go through the provider's batch API,
    recording their batches under ``batch_dir``; requests awaiting a batch are rows with
    status ``pending`` (a later run collects them). Without ``batch_dir`` (evaluation, which
    needs its answers now) they are judged online. Ctrl-C stops new calls, stores what is in
    flight, and raises ``KeyboardInterrupt``.
    """
    budget = budget or Budget(cfg.max_cost_usd)
    backends = [build_judge(spec) for spec in cfg.judges]
    records = pairs.select_columns(pair_columns(pairs)).to_list()
    out: list[dict] = []
    with _finish_in_flight_on_interrupt(budget):
        for backend in backends:
            out += _judge_with(backend, records, cfg, store, budget, batch_dir)
    if budget.interrupted:
        raise KeyboardInterrupt("judging interrupted; every answer received is stored")
    if budget.exhausted():
        log.warning(
            "judge: budget max_cost_usd=%s reached after $%.4f; calls not made are "
            "'skipped' and will be asked on the next run",
            cfg.max_cost_usd,
            budget.spent,
        )
    return Dataset.from_list(out)


def _judge_with(
    backend: JudgeBackend,
    records: list[dict],
    cfg: JudgeConfig,
    store: JudgmentStore,
    budget: Budget,
    batch_dir: Path | None,
) -> list[dict]:
    tasks = plan_requests(backend, records, cfg.orders, cfg.seed)
    known = store.get_many(t.key for t in tasks)
    todo = list({t.key: t for t in tasks if due(known.get(t.key), cfg.max_failures)}.values())
    log.info(
        "judge %s: %d requests, %d cached, %d to judge",
        backend.name,
        len(tasks),
        len(tasks) - len(todo),
        len(todo),
    )
    awaited: dict[str, str] = {}
    if batch_dir is not None and _batched(backend):
        make_record = partial(_record, _base_record(backend))
        run = BatchRun(
            backend, store=store, budget=budget, batch_dir=batch_dir, make_record=make_record
        )
        awaited = run.run(todo)
    elif todo:
        _run_claimed(backend, todo, store, budget)
    stored = store.get_many(t.key for t in tasks)
    results = [(t, _result(t, stored, awaited, budget)) for t in tasks]
    p_a_of = _pointwise_p_a(backend, results) if _mode(backend) == "pointwise" else None
    rows = []
    for t, rec in results:
        if p_a_of is not None:
            p_a = p_a_of.get(t.row)
        else:
            p_first = rec.get("p_first")
            p_a = None if p_first is None else (p_first if t.order == "ab" else 1 - p_first)
        rows.append(
            {
                **records[t.row],
                "judge": backend.name,
                "order": t.order,
                "p_a": p_a,
                "cached": t.key in known and known[t.key]["status"] != "error",
                **{k: rec.get(k) for k in _RECORD_FIELDS},
            }
        )
    return rows


def due(record: dict | None, max_failures: int) -> bool:
    """Whether a key must be asked: never answered, or failed fewer than ``max_failures``
    times."""
    if record is None:
        return True
    return record["status"] == "error" and (record.get("failures") or 0) < max_failures


def failure_counts(judgments: Dataset, max_failures: int) -> dict[str, object]:
    """Failed judgments by reason (error type and status code), and how many will be asked
    again on the next run (``retryable``) or have failed too often (``gave_up``)."""
    failed = [
        (error or "", failures or 0)
        for status, error, failures in zip(
            judgments["status"], judgments["error"], judgments["failures"], strict=True
        )
        if status == "error"
    ]
    if not failed:
        return {}
    retryable = sum(n < max_failures for _, n in failed)
    return {
        "retryable": retryable,
        "gave_up": len(failed) - retryable,
        "reasons": dict(Counter(failure_reason(e) for e, _ in failed).most_common()),
    }


def failure_reason(error: str) -> str:
    """``APIConnectionError``, ``RateLimitError 429``...: an error text without its detail."""
    if error.startswith("gave up after"):
        error = error.partition(": ")[2]
    return error.partition(":")[0].strip() or "unknown"


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


def pair_columns(pairs: Dataset) -> list[str]:
    """The pair columns a judge reads: the fixed ones, and ``reference`` when present."""
    return [*PAIR_COLUMNS, *(["reference"] if "reference" in pairs.column_names else [])]


def _mode(backend: JudgeBackend) -> str:
    return getattr(getattr(backend, "rubric", None), "mode", "pairwise")


def _pointwise_p_a(backend: JudgeBackend, results: list[tuple[_Task, dict]]) -> dict[int, float]:
    """P(a wins) from two pointwise scores: 0.5 plus half the score difference as a share of
    the scale, so ``aggregate.min_margin`` reads as a minimum score gap (a 1-point gap on a
    1-5 scale is a margin of 0.25)."""
    scores = backend.rubric.scores
    span = max(scores) - min(scores)
    by_pair: dict[int, dict[str, float | None]] = {}
    for task, rec in results:
        ok = rec.get("status") == "ok"
        by_pair.setdefault(task.row, {})[task.order] = rec.get("score") if ok else None
    out = {}
    for row, got in by_pair.items():
        a, b = got.get("a"), got.get("b")
        if a is not None and b is not None:
            out[row] = 0.5 + 0.5 * max(-1.0, min(1.0, (a - b) / span))
    return out


def _batched(backend: JudgeBackend) -> bool:
    batch = getattr(getattr(backend, "cfg", None), "batch", None)
    return batch is not None and batch.enabled


def _result(task: _Task, stored: dict[str, dict], awaited: dict[str, str], budget: Budget) -> dict:
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


def _skipped(task: _Task, budget: Budget) -> dict:
    return {
        "key": task.key,
        "status": "skipped",
        "prompt_hash": task.prompt_hash,
        "error": f"not asked: budget max_cost_usd={budget.max_cost_usd} reached",
    }


def plan_requests(
    backend: JudgeBackend, records: list[dict], orders: str, seed: int = 0
) -> list[_Task]:
    """Render every request and its cache key up front, so a rubric error surfaces before
    any call is made (and a dry run can look the keys up). A pointwise judge scores each
    answer on its own (orders ``a`` and ``b``); an answer in several pairs is asked once."""
    identity = backend.identity()
    pointwise = _mode(backend) == "pointwise"
    tasks = []
    for row, rec in enumerate(records):
        ab = ("ab", rec["response_a"], rec["response_b"])
        ba = ("ba", rec["response_b"], rec["response_a"])
        if pointwise:
            options = [("a", rec["response_a"], ""), ("b", rec["response_b"], "")]
        elif orders == "both":
            options = [ab, ba]
        elif orders == "random":
            options = [ab if int(stable_hash([seed, rec["pair_id"]])[0], 16) % 2 else ba]
        else:
            options = [ab]
        for order, first, second in options:
            request = JudgeRequest(
                prompt=rec["prompt"], first=first, second=second, reference=rec.get("reference")
            )
            request = replace(request, rendered=backend.render(request))
            prompt_hash = stable_hash(request.rendered)
            key = stable_hash({"judge": identity, "input": prompt_hash})
            tasks.append(_Task(row, order, request, key, prompt_hash))
    return tasks


def _run_claimed(
    backend: JudgeBackend, todo: list[_Task], store: JudgmentStore, budget: Budget
) -> None:
    """Judge ``todo``, claiming each key first; keys another live run holds are waited for
    (and taken over if that run dies before answering)."""
    by_key = {t.key: t for t in todo}
    with Claims(store.path) as claims:
        mine, others = claims.claim(by_key)
        _run(backend, [by_key[k] for k in mine], store, budget)
        if others:
            log.info(
                "judge %s: %d judgments are being asked by another run on %s; waiting for them",
                backend.name,
                len(others),
                store.path,
            )
        since = time.time()
        while others and budget.allows():
            time.sleep(WAIT_POLL_S)
            stored = store.get_many(others)
            # an error recorded while we waited is that run's try; the next run asks again
            unsettled = [
                k
                for k in others
                if k not in stored
                or (stored[k]["status"] == "error" and stored[k]["created_at"] < since)
            ]
            mine, others = claims.claim(unsettled)
            if mine:
                log.info("judge %s: taking over %d judgments", backend.name, len(mine))
                _run(backend, [by_key[k] for k in mine], store, budget)


def _run(backend: JudgeBackend, todo: list[_Task], store: JudgmentStore, budget: Budget) -> None:
    if not todo:
        return
    base = _base_record(backend)
    failed = 0
    with tqdm(total=len(todo), desc=f"judging ({backend.name})", unit="judgment") as bar:

        def on_result(index: int, verdict: Verdict) -> None:
            nonlocal failed
            task = todo[index]
            store.put(_record(base, task.key, task.prompt_hash, verdict))
            failed += verdict.status != "ok"
            bar.update(1)
            if bar.n == len(todo) or bar.n % 16 == 0:  # formatting it costs more than a commit
                bar.set_postfix(
                    in_flight=getattr(backend, "in_flight", 0),
                    failed=failed,
                    cost=f"${budget.spent:.4f}",
                    refresh=False,
                )

        backend.run([t.request for t in todo], on_result, budget)


def _base_record(backend: JudgeBackend) -> dict[str, str]:
    """What every stored judgment of this judge shares."""
    identity = backend.identity()
    return {
        "judge": backend.name,
        "backend": identity["backend"],
        "model": identity.get("model", identity.get("callable")),
        **backend.provenance(),
    }


def _record(base: dict[str, str], key: str, prompt_hash: str | None, verdict: Verdict) -> dict:
    """A verdict as a store row, the same whether it came online or from a provider batch."""
    return {
        **base,
        "key": key,
        "prompt_hash": prompt_hash,
        **{k: getattr(verdict, k) for k in _VERDICT_FIELDS},
    }
