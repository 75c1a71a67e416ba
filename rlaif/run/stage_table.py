"""The pipeline's stages, declared once: order, upstream, output folder, what a stage's
fingerprint covers, and the step that runs it.

The runner (:mod:`rlaif.run.runner`) is generic over this table; a stage's step lives in its
own module (``rlaif/stages/<name>.py``, imported only when the stage runs) and takes the
run it is part of (:class:`rlaif.run.context.Run`). Adding a stage is one entry here and its
own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: str | None
    """The stage whose output this one reads (its content is part of the fingerprint)."""
    output: str
    """The folder in the run directory that holds the stage's output."""
    covers: tuple[str, ...]
    """What the fingerprint covers besides upstream: config sections (``sample``, ``judge``,
    ``model``...) and run inputs (``train_prompts``: their content; ``rubrics``: the judges'
    rubric file hashes; ``train_input``: a dataset given instead of the run's own;
    ``policy``: the policy a run starts from, when it is not the SFT model)."""
    step: str
    """``module:function``; the function takes a :class:`rlaif.run.context.Run`, writes the
    stage's output and returns its summary counts."""
    inputs: str | None = None
    """``module:function`` naming what else the fingerprint covers, read from the run (edited
    checklists, calibration files, people's labels): the function takes the run and returns
    entries added to the stage's own config section (``{}``: nothing now)."""
    runs_models: bool = True
    """Whether it may load a model: the manifest's hardware and dtypes are recorded when such
    a stage starts (finding them imports torch, seconds the other stages need not spend)."""

    def run(self, run: Any) -> dict[str, Any]:
        """Run the step on ``run`` (what :class:`rlaif.run.context.Run` says a step sees)."""
        return _function(self.step)(run)

    def run_inputs(self, run: Any) -> dict[str, Any]:
        """What the stage's ``inputs`` function reads from ``run`` for its fingerprint."""
        return _function(self.inputs)(run) if self.inputs else {}


def _function(ref: str) -> Callable[[Any], dict[str, Any]]:
    module, _, function = ref.partition(":")
    return getattr(import_module(module), function)


STAGES: tuple[Stage, ...] = (
    Stage("sample", None, "samples", ("model", "prompts", "sample", "train_prompts", "policy"),
          "rlaif.stages.sample:step"),
    Stage("pair", "sample", "pairs", ("pair",), "rlaif.stages.pair:step", runs_models=False),
    Stage("judge", "pair", "judgments", ("judge", "rubrics"), "rlaif.stages.judge:step",
          inputs="rlaif.stages.judge:covered"),
    Stage("aggregate", "judge", "preferences", ("aggregate",), "rlaif.stages.aggregate:step",
          inputs="rlaif.stages.aggregate:covered", runs_models=False),
    Stage("train", "aggregate", "train", ("model", "train", "reward", "train_input", "policy"),
          "rlaif.stages.train:step"),
    Stage("evaluate", "train", "evaluation", ("evaluate", "judge", "rubrics", "policy"),
          "rlaif.stages.evaluate:step"),
)  # fmt: skip
NAMES = tuple(s.name for s in STAGES)
BY_NAME = {s.name: s for s in STAGES}
DATA_STAGES = list(NAMES[: NAMES.index("aggregate") + 1])
"""What makes a preference dataset; the rest (:data:`TRAIN_STAGES`) trains on one (a night's
cumulative set, a round's own with its replay share) and evaluates."""
TRAIN_STAGES = list(NAMES[len(DATA_STAGES) :])
