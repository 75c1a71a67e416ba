"""The pipeline's judges as a reward inside the RL loops people already run: a user's own
``trl.GRPOTrainer`` (:class:`TrlReward`), verl's reward loop (:mod:`rlaif.rewards.verl`) and
OpenRLHF's reward file (:mod:`rlaif.rewards.openrlhf`), each a thin layer over one
:class:`RewardService` (one judgment store, one budget, batches); ``rlaif serve-reward`` is
its HTTP face. What a reward is made of (judges and verifiable checks, weighted, normalised
per group) is the pipeline's ``reward:`` section (:class:`MixedReward`)."""

from rlaif.rewards.mixed import Item, ItemReward, MixedReward, Scores
from rlaif.rewards.service import RewardService
from rlaif.rewards.trl import TrlReward

__all__ = ["Item", "ItemReward", "MixedReward", "RewardService", "Scores", "TrlReward"]
