"""The pipeline's configuration: every stage's section, the checks across sections, and the
hash that names a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from rlaif.config.base import Strict as _Strict
from rlaif.config.data import AggregateConfig, PairConfig, PromptsConfig, SampleConfig
from rlaif.config.judge import JudgeConfig
from rlaif.config.result import Added, NoResult, result_dump
from rlaif.config.reward import RewardConfig
from rlaif.config.schedule import NightlyConfig, RoundsConfig
from rlaif.config.training import EvaluateConfig, TrainConfig
from rlaif.executors.config import RayConfig
from rlaif.hashing import stable_hash
from rlaif.models.loading import DEFAULT_MODEL


class PipelineConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    model: str = DEFAULT_MODEL
    """The SFT policy: a built-in name, a local HF directory or a cached hub id."""
    output_dir: str = "outputs"
    prompts: PromptsConfig = PromptsConfig()
    sample: SampleConfig = SampleConfig()
    pair: PairConfig = PairConfig()
    judge: JudgeConfig = JudgeConfig()
    aggregate: AggregateConfig = AggregateConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    reward: Annotated[RewardConfig, Added()] = RewardConfig()
    """What GRPO and the trainers' adapters reward (:mod:`rlaif.rewards`)."""
    nightly: NightlyConfig = NightlyConfig()
    rounds: Annotated[RoundsConfig | None, Added()] = None
    """On-policy rounds (``rlaif run``); null: one run from the SFT model."""
    executor: Annotated[Literal["local", "ray"], NoResult()] = "local"
    """Where sampling and judging run: this process, or Ray actors (``ray:``)."""
    ray: Annotated[RayConfig, NoResult()] = RayConfig()

    def ray_executor(self) -> RayConfig | None:
        """The Ray settings when ``executor: ray``; None runs the stages here."""
        return self.ray if self.executor == "ray" else None

    @model_validator(mode="after")
    def _start_policies_need_a_trainer_that_can_start_there(self) -> PipelineConfig:
        """Starting from a trained policy with the SFT model as the anchor is DPO's (a
        separate reference); PPO and GRPO anchor to the model they start from."""
        method = self.train.method
        if self.rounds and self.rounds.reference == "sft" and method != "dpo":
            raise ValueError(
                f"rounds.reference: 'sft' needs train.method dpo (method '{method}' anchors "
                "its KL to the model it starts from: use reference: previous)"
            )
        if self.nightly.policy == "latest":
            if not self.nightly.train:
                raise ValueError("nightly.policy: 'latest' needs nightly.train: true")
            if method != "dpo":
                raise ValueError(f"nightly.policy: 'latest' needs train.method dpo, not {method}")
        return self

    @model_validator(mode="after")
    def _reward_judges_exist(self) -> PipelineConfig:
        names = [spec.name for spec in self.judge.judges]
        for n, component in enumerate(self.reward.components):
            if component.kind == "judge" and component.judge not in names:
                raise ValueError(
                    f"reward.components.{n}.judge: no judge named '{component.judge}' in "
                    f"judge.judges (judges: {', '.join(names) or 'none'})"
                )
        return self

    def hash(self) -> str:
        return stable_hash(self.stable_dump())

    def judgment_store_path(self) -> Path:
        """The SQLite judgment store (``judge.cache``; by default the one every run under
        ``output_dir`` shares)."""
        return Path(self.judge.cache or Path(self.output_dir) / "judgments.sqlite")

    def stable_dump(self, *, fingerprint: bool = False) -> dict[str, Any]:
        """The config as the run's hash sees it (with ``fingerprint``, as the stages'
        fingerprints do): each field's declaration says whether it is part of a result
        (:mod:`rlaif.config.result`)."""
        return result_dump(self, fingerprint=fingerprint)
