"""One training run: what it needs (a :class:`TrainJob`), as the train stage builds it and
``accelerate launch``'s processes read it back from JSON; :mod:`rlaif.training.methods` runs
it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlaif.config import JudgeConfig, RewardConfig, TrainConfig
from rlaif.training.monitor import Monitor
from rlaif.training.trl_args import trainer_args, trl_config

log = logging.getLogger(__name__)
TRL_COLUMNS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class TrainJob:
    """Everything a training run needs besides its data."""

    cfg: TrainConfig
    model: str
    """The SFT model: the policy's start, DPO's reference and PPO's KL anchor."""
    output_dir: Path
    """The policy goes to ``output_dir/model``."""
    checkpoint_dir: Path
    judges: JudgeConfig | None = None
    """``d_rlaif`` scores rollouts with the first of them."""
    system_prompt: str | None = None
    """The system prompt the preferences were sampled under; PPO rollouts and reward
    scoring show it too."""
    store: Path | None = None
    """The judgment store: the judges as a reward (GRPO, d-RLAIF) read and write it as the judge
    stage does."""
    reference: str | None = None
    """DPO's reference when it is not ``model`` (an on-policy round starts from the previous
    round's policy and keeps the SFT model as its reference)."""
    monitor_prompts: tuple[str, ...] = ()
    """The held-out prompts ``train.monitor`` watches the policy answer."""
    reward: RewardConfig | None = None
    """What GRPO rewards when it names components (``reward:``); else the judges against the
    SFT model's answers."""
    references: dict[str, str] | None = None
    """The prompts' reference answers by ``prompt_id``, for reward components that compare
    with one."""

    def monitor(self) -> Monitor | None:
        """The ``train.monitor`` of this job (its record beside the checkpoints), if any."""
        if self.cfg.monitor is None:
            return None
        return Monitor(
            self.cfg.monitor,
            prompts=list(self.monitor_prompts),
            reference=self.reference or self.model,
            folder=self.checkpoint_dir / "monitor",
            system_prompt=self.system_prompt,
            store=self.store,
        )

    def trl_args(self, section: str, settings: Any, folder: Path) -> Any:
        """``settings`` (``train.<section>``) as its TRL trainer's config class, with what
        every trainer of this job shares: checkpoints in ``folder``, seed, precision and
        trackers."""
        shared = trainer_args(
            output_dir=folder,
            seed=self.cfg.seed,
            save_steps=self.cfg.save_steps,
            dtype=self.cfg.dtype,
            logging_steps=settings.logging_steps,
            report_to=self.cfg.report_to,
        )
        return trl_config(section, settings, shared)

    def to_json(self) -> dict[str, Any]:
        return {
            "train": self.cfg.model_dump(mode="json"),
            "model": self.model,
            "output_dir": str(self.output_dir),
            "checkpoint_dir": str(self.checkpoint_dir),
            "judges": self.judges.model_dump(mode="json") if self.judges else None,
            "system_prompt": self.system_prompt,
            "store": str(self.store) if self.store else None,
            "reference": self.reference,
            "monitor_prompts": list(self.monitor_prompts),
            "reward": self.reward.model_dump(mode="json") if self.reward else None,
            "references": self.references,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainJob:
        return cls(
            cfg=TrainConfig.model_validate(data["train"]),
            model=data["model"],
            output_dir=Path(data["output_dir"]),
            checkpoint_dir=Path(data["checkpoint_dir"]),
            judges=JudgeConfig.model_validate(data["judges"]) if data["judges"] else None,
            system_prompt=data["system_prompt"],
            store=Path(data["store"]) if data.get("store") else None,
            reference=data.get("reference"),
            monitor_prompts=tuple(data.get("monitor_prompts", ())),
            reward=RewardConfig.model_validate(data["reward"]) if data.get("reward") else None,
            references=data.get("references"),
        )
