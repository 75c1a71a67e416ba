"""Where the data stages run: ``executor: local`` (this process) or ``ray`` (a Ray cluster)."""

from __future__ import annotations

from pydantic import Field

from rlaif.config.base import Strict


class RayConfig(Strict):
    """The ``ray:`` section, read when ``executor: ray``. Where work runs changes no result,
    so none of it is part of a stage's fingerprint: a run started locally resumes on Ray."""

    address: str | None = None
    """A running cluster (``auto``, ``ray://head:10001``); null starts Ray on this machine."""
    num_cpus: int | None = Field(default=None, ge=1)
    """CPUs of the Ray started on this machine (null: all of them)."""
    sample_workers: int = Field(default=1, ge=1)
    """Sampling actors, each holding the SFT model (one engine per worker)."""
    judge_workers: int = Field(default=2, ge=1)
    """Judging actors. API judges' ``max_concurrency`` and ``requests_per_minute`` are split
    between them, so the provider sees the limits the config names."""
    cpus_per_worker: float = Field(default=1.0, gt=0)
    """CPUs each sampling actor reserves (torch there uses that many threads), and each judging
    actor that holds a model."""
    judge_cpus_per_worker: float = Field(default=0.25, gt=0)
    """CPUs each API judging actor reserves: it waits on the network, so four share a core."""
    gpus_per_worker: float = Field(default=0.0, ge=0)
    """GPUs each sampling or local-judge actor reserves (vLLM or transformers on GPU nodes)."""
    batch_size: int = Field(default=64, ge=1)
    """Judge requests per actor call: an actor answers a batch, then looks at the budget. A
    kill -9 of the driver re-asks at most ``judge_workers x batch_size``; smaller batches
    lose throughput to the wait for each batch's slowest answer."""
