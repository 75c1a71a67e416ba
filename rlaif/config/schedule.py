"""Typed configuration of how runs follow one another: nightly jobs over unseen prompts, and
on-policy rounds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from rlaif.config.base import Strict as _Strict
from rlaif.config.result import Added


class NightlyConfig(_Strict):
    """``rlaif nightly``: each night samples and judges only the prompts that no earlier
    successful night has seen, and appends its preferences to a cumulative dataset."""

    max_prompts: int | None = Field(default=None, ge=1)
    """New prompts per night at most; the rest wait for later nights."""
    max_cost_usd: float | None = Field(default=None, ge=0)
    """Judge spending per night (dated run), across its stages and re-invocations."""
    train: bool = False
    """Train on the cumulative preference dataset (then evaluate) after each night."""
    policy: Annotated[Literal["sft", "latest"], Added()] = "sft"
    """Whose answers a night judges: the SFT model's, or (``latest``, with ``train``) those of
    the policy the latest trained night made, which is also where tonight's DPO starts (the
    SFT model stays its reference)."""


class StopWhen(_Strict):
    min_gain: float | None = Field(default=None, ge=0.0, le=0.5)
    """Stop after a round whose win rate over the one before (round 1: SFT) is < 0.5 + this."""


class RoundsConfig(_Strict):
    """On-policy rounds for ``rlaif run``: round r samples from round r-1's trained policy
    (round 1 from the SFT model), judges, and trains from that policy on its preferences."""

    count: int = Field(default=2, ge=1)
    reference: Literal["sft", "previous"] = "sft"
    """DPO's reference each round: the SFT model, or the policy the round started from."""
    replay: float = Field(default=0.0, ge=0.0, le=1.0)
    """Earlier rounds' preferences added to a round's training set, as a share of its own."""
    stop_when: StopWhen = StopWhen()
