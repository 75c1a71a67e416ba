"""Sampling and judging as Ray Data pipelines, for prompts and judges one machine cannot hold.

The driver (the process running ``rlaif run``) stays in charge of everything durable: it
decides what is left to do from the sample stage's saved chunks and from the judgment store,
sends only that to the actors, and saves each chunk and stores each answer the moment it
streams back, exactly as the local executor does. So a crash or Ctrl-C on a cluster re-asks
only what was in flight, and the store stays the one source of truth.

Actors run the engines and judge backends the local executor uses: a sampling actor opens
the same engine for each chunk's seed, so a chunk sampled on Ray equals the chunk sampled
here; a judge actor builds the judge from its config. A switch actor carries "stop" from the
driver (Ctrl-C) to the judge actors, which look at it before each batch, and counts what
they spend, closing itself when the budget is spent: the driver sees a batch's cost only when
it streams back, after the actor may have started its next one.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlaif.executors import ray_vllm
from rlaif.executors.cluster import start_ray
from rlaif.executors.config import RayConfig
from rlaif.judges.failures import FatalJudgeError
from rlaif.judges.records import Budget, JudgeRequest, Verdict
from rlaif.redaction import redact
from rlaif.sampling.engine import Completion

log = logging.getLogger(__name__)
LOCAL_MODEL_JUDGES = ("transformers", "vllm")
"""Judge backends whose actors hold a model (and take ``ray.gpus_per_worker``)."""


class _SampleWorker:
    """One sampling engine for the actor's life; a chunk is sampled as the local stage
    samples it (same conversations, same seed)."""

    def __init__(self, model: str, sample_cfg: str):
        from rlaif.config import SampleConfig

        self.model = model
        self.cfg = SampleConfig.model_validate_json(sample_cfg)
        self.engine: Any = None
        self.closing = ExitStack()  # the engine lives as long as the actor

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from rlaif.sampling import open_engine
        from rlaif.sampling.engine import generation_params

        if self.engine is None:
            cfg = self.cfg
            self.engine = self.closing.enter_context(
                open_engine(
                    self.model,
                    backend=cfg.backend,
                    dtype=cfg.dtype,
                    seed=cfg.seed + int(batch["index"][0]),
                    gpu_memory_utilization=cfg.gpu_memory_utilization,
                    server=cfg.server,
                )
            )
        out = []
        for index, conversations in zip(batch["index"], batch["conversations"], strict=True):
            params = generation_params(self.cfg, self.cfg.seed + int(index))
            done = self.engine.generate(json.loads(conversations), params)
            out.append(json.dumps([[asdict(c) for c in cs] for cs in done]))
        return {"index": batch["index"], "completions": out}


def sample_chunks(
    cfg: RayConfig, model: Path | str, sample_cfg: Any, chunks: dict[int, list]
) -> Iterator[tuple[int, list[list[Completion]]]]:
    """``chunks`` (index -> conversations) sampled by ``cfg.sample_workers`` actors, yielded
    as each finishes (in no particular order). ``backend: vllm`` goes through Ray Data's own
    vLLM stage where Ray's LLM API is installed."""
    if not chunks:
        return
    if sample_cfg.backend == "vllm" and ray_vllm.available():
        yield from ray_vllm.sample_chunks(cfg, model, sample_cfg, chunks)
        return
    ray = start_ray(cfg)
    rows = [{"index": i, "conversations": json.dumps(c)} for i, c in sorted(chunks.items())]
    done = ray.data.from_items(rows).map_batches(
        _SampleWorker,
        fn_constructor_args=(str(model), sample_cfg.model_dump_json()),
        batch_size=1,
        compute=_pool(ray, min(cfg.sample_workers, len(rows))),
        num_cpus=cfg.cpus_per_worker,
        num_gpus=cfg.gpus_per_worker,
    )
    for batch in _streamed(done):
        for index, completions in zip(batch["index"], batch["completions"], strict=True):
            yield int(index), [[Completion(**c) for c in cs] for cs in json.loads(completions)]


class _Switch:
    """Open until the driver says stop (Ctrl-C, its budget) or the actors have spent
    ``allowance`` USD (None: no cap)."""

    def __init__(self, allowance: float | None) -> None:
        self.open = True
        self.allowance = allowance

    def close(self) -> None:
        self.open = False

    def spend(self, usd: float) -> None:
        if self.allowance is not None:
            self.allowance -= usd
            self.open = self.open and self.allowance > 0

    def is_open(self) -> bool:
        return self.open


class _JudgeWorker:
    """One judge backend for the actor's life, built from its config."""

    def __init__(self, spec: Any, switch: Any):
        from rlaif.judges import build_judge

        self.judge = build_judge(spec)
        self.judge.keep_open()
        self.switch = switch

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import ray

        rows = len(batch["index"])
        verdicts: list[str] = [""] * rows  # "": not asked (stopped)
        fatal = ""
        if ray.get(self.switch.is_open.remote()):
            requests = [JudgeRequest(**json.loads(r)) for r in batch["request"]]

            def keep(i: int, verdict: Verdict) -> None:
                verdicts[i] = redact(json.dumps(asdict(verdict)))

            spent = Budget()
            try:
                self.judge.run(requests, keep, spent)
            except FatalJudgeError as exc:  # said by the driver, with the answers before it
                fatal = redact(str(exc))
            # before this actor's next look at the switch: calls to one actor run in order
            self.switch.spend.remote(spent.spent)
        return {"index": batch["index"], "verdict": verdicts, "fatal": [fatal] * rows}


def judge_requests(
    cfg: RayConfig,
    judge: Any,
    requests: list[JudgeRequest],
    on_result: Callable[[int, Verdict], None],
    budget: Budget,
) -> None:
    """``judge.run`` on Ray: ``cfg.judge_workers`` actors answer batches of requests and the
    driver hands each verdict to ``on_result`` (which stores it) as it streams back. When
    the budget stops allowing calls, actors stop starting batches; batches in flight finish
    and are handed on, since their calls are paid."""
    ray = start_ray(cfg)
    allowance = None if budget.max_cost_usd is None else budget.max_cost_usd - budget.spent
    switch = ray.remote(num_cpus=0)(_Switch).remote(allowance)
    rows = [
        {"index": i, "request": json.dumps(asdict(r), ensure_ascii=False)}
        for i, r in enumerate(requests)
    ]
    # One block per batch: a block is not split across batches, so blocks of another size
    # would leave a small batch at each block's end, which costs a round of answers.
    blocks = math.ceil(len(rows) / cfg.batch_size)
    holds_model = judge.cfg.backend in LOCAL_MODEL_JUDGES
    answered = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _JudgeWorker,
        fn_constructor_args=(_shared_limits(judge.cfg, cfg.judge_workers), switch),
        batch_size=cfg.batch_size,
        compute=_pool(ray, min(cfg.judge_workers, blocks)),
        num_cpus=cfg.cpus_per_worker if holds_model else cfg.judge_cpus_per_worker,
        num_gpus=cfg.gpus_per_worker if holds_model else 0,
    )
    stopped = False
    try:
        for batch in _streamed(answered):
            for index, verdict in zip(batch["index"], batch["verdict"], strict=True):
                if not verdict:
                    continue
                got = Verdict(**json.loads(verdict))
                budget.add(got.cost_usd)
                on_result(int(index), got)
            if fatal := next((f for f in batch["fatal"] if f), None):
                raise FatalJudgeError(fatal)
            if not stopped and not budget.allows():
                stopped = True
                switch.close.remote()
    finally:
        ray.kill(switch)  # a batch still to start finds it gone and fails: no call is made


def _pool(ray: Any, size: int) -> Any:
    """``size`` actors, each given one batch at a time: a batch queued at an actor would be
    work a killed driver never sees, and the store, not Ray, decides what is left to ask."""
    return ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1)


def _shared_limits(spec: Any, workers: int) -> Any:
    """An API judge's config with its concurrency and request rate split between the
    actors; other judges' configs as they are."""
    fields = getattr(type(spec), "model_fields", {})
    if "max_concurrency" not in fields or workers == 1:
        return spec
    update: dict[str, Any] = {"max_concurrency": max(1, spec.max_concurrency // workers)}
    if spec.requests_per_minute is not None:
        update["requests_per_minute"] = spec.requests_per_minute / workers
    return spec.model_copy(update=update)


def _streamed(dataset: Any) -> Iterator[dict[str, Any]]:
    """Batches as each finishes, none fetched ahead: a batch the driver has not seen is one a
    killed driver would pay for again."""
    yield from dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0)
