"""What a stage's step sees of the run it is part of: the one interface between the runner
(which implements it) and the stages (which use it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datasets import Dataset

    from rlaif.config import PipelineConfig
    from rlaif.judges import Budget
    from rlaif.judging.store import JudgmentStore
    from rlaif.run.run_dir import RunDir
    from rlaif.run.start_policy import StartPolicy


class Run(Protocol):
    """What a stage's step sees of the run it is part of."""

    cfg: PipelineConfig
    dir: RunDir
    manifest: dict[str, Any]
    train_prompts: Dataset
    heldout: Dataset
    budget: Budget
    train_input: Path | None
    """A preference dataset to train on instead of the run's own (nightly: the cumulative
    one)."""
    start: StartPolicy | None
    """The trained policy this run samples from and trains from (on-policy rounds); None:
    the SFT model (``cfg.model``)."""

    def input(self, stage: str) -> Dataset:
        """The output of ``stage`` in this run directory."""
        ...

    def save(self, stage: str, output: Dataset) -> None:
        """Write ``stage``'s output atomically."""
        ...

    def fingerprint(self, stage: str) -> str: ...

    def store(self) -> JudgmentStore:
        """The judgment store this pipeline shares with every run under its output folder."""
        ...
