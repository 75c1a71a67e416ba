"""A pipeline's reward, ready for any trainer: checked before anything is paid, one judgment
store and one budget, and callers that ask one completion at a time (verl's reward loop,
OpenRLHF's reward file) gathered into batches.

:class:`RewardService` is what every adapter holds. Its ``score`` and ``ascore`` may be called
from many threads or coroutines at once: a worker thread waits ``linger_s`` after the first
call for others, then scores what arrived as one batch (one listwise call per prompt group,
every judge call in flight together), and hands each caller its own results. A batch that
raises is scored again call by call, so one bad call fails alone.

With API judges the service has two lanes (each its own judges, HTTP clients and store
connection, one budget between them): while one batch waits on the judges, the next is
gathered and sent, so a caller that holds its threads waiting (OpenRLHF's reward file) waits
one judge call, not the one before it too. Local judges keep one lane (one copy of the model).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlaif.config import PipelineConfig, load_pipeline
from rlaif.errors import ConfigError
from rlaif.judges import Budget
from rlaif.judging.shared_budget import SharedBudget
from rlaif.judging.store import JudgmentStore, missing_judgments
from rlaif.rewards.mixed import Item, ItemReward, MixedReward

log = logging.getLogger(__name__)
API_BACKENDS = ("openai", "anthropic")
"""Judges behind an HTTP API: a lane more costs a client, not a model's memory."""
SESSION_ENV = "RLAIF_REWARD_SESSION"
"""Names the budget every process of one training run shares (see :class:`SharedBudget`)."""
PIPELINE_ENV = "RLAIF_PIPELINE"
"""The pipeline YAML a trainer's worker builds its reward from (verl, OpenRLHF)."""
LOG_DIR_ENV = "RLAIF_REWARD_LOG_DIR"
"""Where each worker process appends its reward log (``reward_log.<pid>.jsonl``)."""
_process: RewardService | None = None
_process_lock = threading.Lock()


def process_service(who: str) -> RewardService:
    """The reward of this process (a trainer's worker loading a reward file), built once from
    ``$RLAIF_PIPELINE``; ``who`` names the adapter in the error when it is unset."""
    global _process
    if _process is None:
        with _process_lock:
            if _process is None:
                path = os.environ.get(PIPELINE_ENV)
                if not path:
                    raise ConfigError(
                        f"{who}: set {PIPELINE_ENV} to the pipeline YAML whose judges and "
                        "reward: score the answers"
                    )
                log_dir = os.environ.get(LOG_DIR_ENV)
                log_path = Path(log_dir) / f"reward_log.{os.getpid()}.jsonl" if log_dir else None
                _process = RewardService.from_yaml(path, log_path=log_path)
    return _process


@dataclass
class _Call:
    items: list[Item]
    step: int | None
    done: Future


class RewardService:
    """The reward ``cfg`` describes (``reward:`` over ``judge:``), open for scoring.

    Built, it has checked every judge (rubrics rendered, servers reached through their free
    model lists) and the store (no judgments missing from it): nothing is paid before the
    reward can work. ``log_path`` receives each call's account as a JSON line. ``session``
    (default: ``$RLAIF_REWARD_SESSION``) shares ``judge.max_cost_usd`` with every other
    process that names it; without one the budget is this process's.
    """

    def __init__(
        self,
        cfg: PipelineConfig,
        *,
        log_path: Path | str | None = None,
        session: str | None = None,
        linger_s: float = 0.01,
        max_batch: int = 4096,
        check: bool = True,
        lanes: int | None = None,
    ):
        from rlaif.run.preflight import check_judges

        if check:
            check_judges(cfg)
        path = cfg.judgment_store_path()
        missing = missing_judgments(path)
        if missing:
            raise ConfigError(missing)
        self.cfg = cfg
        self.store = JudgmentStore(path)
        session = session or os.environ.get(SESSION_ENV) or None
        self.budget: Budget = (
            SharedBudget(path, session, cfg.judge.max_cost_usd)
            if session
            else Budget(cfg.judge.max_cost_usd)
        )
        log = Path(log_path) if log_path is not None else None
        self.reward = MixedReward(cfg.judge, cfg.reward, self.store, self.budget, log_path=log)
        api = all(j.backend in API_BACKENDS for j in cfg.judge.judges)
        self.lanes = lanes or (2 if api else 1)
        self._stores = [self.store]
        self._free: queue.Queue[MixedReward] = queue.Queue()
        self._free.put(self.reward)
        for _ in range(self.lanes - 1):
            self._stores.append(JudgmentStore(path))
            self._free.put(
                MixedReward(
                    cfg.judge, cfg.reward, self._stores[-1], self.budget, log_path=log,
                    steps=self.reward.steps,
                )
            )  # fmt: skip
        self.linger_s, self.max_batch = linger_s, max_batch
        self._calls: queue.Queue[_Call | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="rlaif-lane")
        self._room = threading.Semaphore(self.lanes)
        self._lock = threading.Lock()
        self.batches = 0

    @classmethod
    def from_yaml(
        cls, path: str | Path, overrides: list[str] | None = None, **options: Any
    ) -> RewardService:
        """From a pipeline YAML (or a shipped pipeline's name), ``key=value`` overrides on top."""
        return cls(load_pipeline(path, overrides), **options)

    @property
    def names(self) -> list[str]:
        """The components, in order."""
        return self.reward.names

    @property
    def steps(self) -> list[dict[str, Any]]:
        """Each batch's account."""
        return self.reward.steps

    # -- scoring ---------------------------------------------------------------------------
    def score_now(self, items: list[Item], step: int | None = None) -> list[ItemReward]:
        """Score ``items`` as one batch in this thread (a trainer that hands over a whole
        step's completions at once: TRL)."""
        lane = self._free.get()
        try:
            return lane.rewards(items, step)
        finally:
            self._free.put(lane)

    def submit(self, items: list[Item], step: int | None = None) -> Future:
        """Queue ``items`` to be scored with whatever else arrives; a future of their rewards."""
        if self._worker is None:
            with self._lock:
                if self._worker is None:
                    self._worker = threading.Thread(
                        target=self._run, name="rlaif-reward", daemon=True
                    )
                    self._worker.start()
        done: Future = Future()
        self._calls.put(_Call(list(items), step, done))
        return done

    def score(self, items: list[Item], step: int | None = None) -> list[ItemReward]:
        """Score ``items``, batched with other threads' calls; blocks until they are scored."""
        return self.submit(items, step).result()

    async def ascore(self, items: list[Item], step: int | None = None) -> list[ItemReward]:
        """Score ``items``, batched with other coroutines' and threads' calls."""
        return await asyncio.wrap_future(self.submit(items, step))

    def _run(self) -> None:
        while True:
            first = self._calls.get()
            if first is None:
                return
            self._room.acquire()  # a lane to score on: calls gather while none is free
            calls, size = [first], len(first.items)
            deadline = time.monotonic() + self.linger_s
            while size < self.max_batch:
                try:
                    more = self._calls.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    self._calls.put(None)
                    break
                calls.append(more)
                size += len(more.items)
            by_step: dict[int | None, list[_Call]] = {}
            for call in calls:
                by_step.setdefault(call.step, []).append(call)
            self._pool.submit(self._score_steps, list(by_step.items()))

    def _score_steps(self, groups: list[tuple[int | None, list[_Call]]]) -> None:
        try:
            for step, calls in groups:
                self._score(calls, step)
        finally:
            self._room.release()

    def _score(self, calls: list[_Call], step: int | None) -> None:
        items = [item for call in calls for item in call.items]
        self.batches += 1
        try:
            got = self.score_now(items, step)
        except Exception as exc:
            if len(calls) == 1:
                calls[0].done.set_exception(exc)
                return
            for call in calls:  # which call is at fault: each alone
                self._score([call], step)
            return
        at = 0
        for call in calls:
            call.done.set_result(got[at : at + len(call.items)])
            at += len(call.items)

    def close(self) -> None:
        if self._worker is not None:
            self._calls.put(None)
            self._worker.join(timeout=30)
            self._worker = None
        self._pool.shutdown(wait=True)
        while not self._free.empty():
            self._free.get().close()
        if isinstance(self.budget, SharedBudget):
            self.budget.close()
        for store in self._stores:
            store.close()

    def __enter__(self) -> RewardService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
