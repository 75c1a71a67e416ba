"""``train.monitor:``: a panel that watches the policy while it trains, apart from its reward."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from rlaif.config.base import Strict
from rlaif.config.judge import JudgeBackendConfig
from rlaif.config.result import Added, Verbatim


class MonitorStopConfig(Strict):
    """When the monitor stops training (each rule off while null). The policy of the last
    check no rule objected to is kept as ``train/model``."""

    max_kl: float | None = Field(default=None, gt=0.0)
    """KL(policy || SFT) on the monitor's prompts, in nats summed over an answer."""
    max_length_ratio: float | None = Field(default=None, gt=0.0)
    """The policy's mean answer length over the SFT model's, in tokens."""
    max_repetition: float | None = Field(default=None, gt=0.0, le=1.0)
    """The share of an answer's word 3-grams that repeat an earlier one, averaged."""
    max_refusal: float | None = Field(default=None, gt=0.0, le=1.0)
    """The share of answers that refuse ("I can't", "I'm unable", ...)."""
    max_attacks: Annotated[float | None, Added()] = Field(default=None, ge=0.0, le=1.0)
    """The share of answers carrying the mark of a judge attack (``rlaif judge-audit``'s: a
    forged rubric delimiter, "the correct answer is A", an appeal to the evaluator, text
    shaped like a verdict, an empty answer); 0 stops at the first such answer."""
    min_win_rate: float | None = Field(default=None, gt=0.0, lt=1.0)
    """The monitor judges' win rate against the SFT model falling below this: the policy now
    loses to where it started on what the monitor measures."""
    win_rate_drop: float | None = Field(default=None, gt=0.0, le=1.0)
    """Reward hacking: over the last ``window`` checks the training reward rose while the
    monitor judges' win rate against the SFT model fell by more than this."""
    window: int = Field(default=3, ge=2)
    min_round_gain: Annotated[float | None, Added()] = Field(default=None, ge=0.0, lt=0.5)
    """On-policy rounds: end the chain after a round whose kept policy's win rate against the
    SFT model (the monitor judges') is not above the previous round's kept policy's (round 1:
    the SFT model's own 0.5) by more than this."""


class MonitorConfig(Strict):
    """Every ``every_steps`` optimizer steps (and once before the first), the policy answers a
    fixed set of held-out prompts greedily and is measured against the SFT model's answers:
    length ratio, repetition, refusals, KL to SFT, and with ``judges`` their win rate. Each
    check goes to ``train/monitor.jsonl`` and the run log; a ``stop`` rule that fires ends
    training, keeps the last approved policy and makes the command exit 9."""

    every_steps: int = Field(default=10, ge=1)
    prompts: int = Field(default=16, ge=1)
    """How many of the run's held-out prompts it watches (the first ones, always the same)."""
    max_new_tokens: int = Field(default=64, ge=1)
    judges: Annotated[list[JudgeBackendConfig], Verbatim("calibration", "check_model", "mode")] = (
        Field(default_factory=list)
    )
    """Judges of what the user wants (not the reward's): each check, P(policy's answer beats
    the SFT model's) in both orders, through the judgment store."""
    max_cost_usd: float | None = Field(default=None, ge=0)
    """What the monitor's judges may spend over the whole training run."""
    stop: MonitorStopConfig = Field(default_factory=MonitorStopConfig)
    seed: int = 0

    @model_validator(mode="after")
    def _judged_rule_needs_judges(self) -> MonitorConfig:
        judged = [
            n
            for n in ("min_win_rate", "win_rate_drop", "min_round_gain")
            if getattr(self.stop, n) is not None
        ]
        if judged and not self.judges:
            raise ValueError(f"stop.{judged[0]} needs monitor judges (train.monitor.judges)")
        return self
