"""Stage 3: every pair judged (in both orders by default) by every configured judge.

Each request is keyed by a hash of the judge's identity and the exact rendered input.
Answers already in the store are reused; new ones are written every ``flush_every``
judgments or ``flush_seconds``, so a re-run pays for nothing twice and a crash loses
only the calls in flight and one unflushed batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

from datasets import Dataset

from rlaif.batches.runner import BatchRun
from rlaif.config import JudgeConfig
from rlaif.hashing import stable_hash
from rlaif.judges import Budget, JudgeBackend, JudgeRequest, Verdict, build_judge
from rlaif.progress import tqdm
from rlaif.stages.pair import PAIR_COLUMNS
from rlaif.store import JudgmentStore

log = logging.getLogger(__name__)
_VERDICT_FIELDS = tuple(f.name for f in fields(Verdict))
_RECORD_FIELDS = (*_VERDICT_FIELDS, "key", "rubric_id", "rubric_hash", "prompt_hash")


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
    needs its answers now) they are judged online.
    """
    budget = budget or Budget(cfg.max_cost_usd)
    backends = [build_judge(spec) for spec in cfg.judges]
    records = pairs.select_columns(pair_columns(pairs)).to_list()
    out: list[dict] = []
    for backend in backends:
        tasks = plan_requests(backend, records, cfg.orders, cfg.seed)
        known = store.get_many(t.key for t in tasks)
        todo = list(
            {
                t.key: t for t in tasks if known.get(t.key, {}).get("status") in (None, "error")
            }.values()
        )
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
        else:
            _run(backend, todo, cfg, store, budget)
        stored = store.get_many(t.key for t in tasks)
        results = [(t, _result(t, stored, awaited, budget)) for t in tasks]
        p_a_of = _pointwise_p_a(backend, results) if _mode(backend) == "pointwise" else None
        for t, rec in results:
            if p_a_of is not None:
                p_a = p_a_of.get(t.row)
            else:
                p_first = rec.get("p_first")
                p_a = None if p_first is None else (p_first if t.order == "ab" else 1 - p_first)
            out.append(
                {
                    **records[t.row],
                    "judge": backend.name,
                    "order": t.order,
                    "p_a": p_a,
                    "cached": t.key in known and known[t.key]["status"] != "error",
                    **{k: rec.get(k) for k in _RECORD_FIELDS},
                }
            )
    if not budget.allows():
        log.warning(
            "judge: budget max_cost_usd=%s reached after $%.4f; calls not made are "
            "'skipped' and will be asked on the next run",
            cfg.max_cost_usd,
            budget.spent,
        )
    return Dataset.from_list(out)


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
            prompt_hash = stable_hash(backend.render(request))
            key = stable_hash({"judge": identity, "input": prompt_hash})
            tasks.append(_Task(row, order, request, key, prompt_hash))
    return tasks


def _run(
    backend: JudgeBackend, todo: list[_Task], cfg: JudgeConfig, store: JudgmentStore, budget: Budget
) -> None:
    base = _base_record(backend)
    buffer: list[dict] = []
    state = {"flushed_at": time.monotonic(), "failed": 0}

    def flush() -> None:
        if buffer:
            store.put_many(buffer)
            buffer.clear()
        state["flushed_at"] = time.monotonic()

    with tqdm(total=len(todo), desc=f"judging ({backend.name})", unit="judgment") as bar:

        def on_result(index: int, verdict: Verdict) -> None:
            task = todo[index]
            buffer.append(_record(base, task.key, task.prompt_hash, verdict))
            state["failed"] += verdict.status != "ok"
            if (
                len(buffer) >= cfg.flush_every
                or time.monotonic() - state["flushed_at"] >= cfg.flush_seconds
            ):
                flush()
            bar.update(1)
            bar.set_postfix(
                in_flight=getattr(backend, "in_flight", 0),
                failed=state["failed"],
                cost=f"${budget.spent:.4f}",
                refresh=False,
            )

        try:
            backend.run([t.request for t in todo], on_result, budget)
        finally:
            flush()


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
