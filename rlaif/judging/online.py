"""Judging online, as the judge stage runs it for every backend without provider batches:
each key claimed against other runs on the same store first (:mod:`rlaif.judging.claims`), each
answer committed the moment it arrives, a progress bar with what is in flight, failed and
spent."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from rlaif.errors import DiskFullError
from rlaif.judging.claims import Claims
from rlaif.judging.schema import judgment_record, record_base
from rlaif.progress import tqdm

if TYPE_CHECKING:
    from rlaif.executors.config import RayConfig
    from rlaif.judges.base import Judge
    from rlaif.judges.records import Budget, Verdict
    from rlaif.judging.plan import Task
    from rlaif.judging.store import JudgmentStore

log = logging.getLogger(__name__)
WAIT_POLL_S = 0.5
"""How often a run waiting on another run's answers looks at the store."""


def judge_online(
    judge: Judge,
    todo: list[Task],
    *,
    store: JudgmentStore,
    budget: Budget,
    ray: RayConfig | None = None,
) -> None:
    """Judge ``todo``, claiming each key first; keys another live run holds are waited for
    (and taken over if that run dies before answering). With ``ray`` the calls are made by
    Ray actors; claims and the store stay with this process."""
    by_key = {t.key: t for t in todo}
    with Claims(store.path) as claims:
        mine, others = claims.claim(by_key)
        _run(judge, [by_key[k] for k in mine], store, budget, ray)
        if others:
            log.info(
                "judge %s: %d judgments are being asked by another run on %s; waiting for them",
                judge.name,
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
                log.info("judge %s: taking over %d judgments", judge.name, len(mine))
                _run(judge, [by_key[k] for k in mine], store, budget, ray)


def _run(
    judge: Judge,
    todo: list[Task],
    store: JudgmentStore,
    budget: Budget,
    ray: RayConfig | None,
) -> None:
    if not todo:
        return
    base = record_base(judge)
    failed = unkept = 0
    with tqdm(total=len(todo), desc=f"judging ({judge.name})", unit="judgment") as bar:

        def on_result(index: int, verdict: Verdict) -> None:
            nonlocal failed, unkept
            task = todo[index]
            try:
                store.put(judgment_record(base, task.key, task.prompt_hash, verdict))
            except DiskFullError as exc:
                # no new call may be paid for an answer that cannot be kept; those in flight
                # are tried as they arrive (space may have been freed meanwhile)
                unkept += 1
                budget.halted = budget.halted or exc
            failed += verdict.status != "ok"
            bar.update(1)
            if bar.n == len(todo) or bar.n % 16 == 0:  # formatting it costs more than a commit
                bar.set_postfix(
                    in_flight=judge.in_flight,
                    failed=failed,
                    cost=f"${budget.spent:.4f}",
                    refresh=False,
                )

        requests = [t.request for t in todo]
        if ray is None:
            judge.run(requests, on_result, budget)
        else:
            from rlaif.executors.ray_data import judge_requests

            judge_requests(ray, judge, requests, on_result, budget)
    if isinstance(budget.halted, DiskFullError):
        budget.halted = DiskFullError(
            store.path,
            detail=f" (judging stopped at the first refused write; every other answer is in "
            f"the store, the {unkept} that could not be written are asked again)",
        )
