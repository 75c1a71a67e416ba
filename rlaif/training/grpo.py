"""GRPO with the pipeline's judges as a live reward (``trl.GRPOTrainer``).

Each step samples a group of completions per prompt from the policy; every completion is
judged against the SFT model's two answers to the same prompt (those of the prompt's first
preference) by the judge stage's own function, so the judges, rubrics, orders, judgment store
and budget are those of the judge stage: a completion judged before is not paid again, and a
crash loses no paid answer. The reward is P(completion beats an SFT answer), averaged over
both answers, orders and judges (a pointwise rubric scores each answer alone, and the reward
is the score gap on the same 0-1 scale). GRPO compares rewards within a group, so the SFT
answers set no level, only a common yardstick; two of them (the judge's preferred and its
dispreferred one) place it mid-way, where a completion's reward says most.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from rlaif.chat import prompts_of
from rlaif.errors import ConfigError
from rlaif.hashing import stable_hash
from rlaif.judges import Budget
from rlaif.judging.reward import JudgeReward
from rlaif.judging.store import JudgmentStore
from rlaif.models.loading import load_tokenizer, resolve_model
from rlaif.training.checkpoints import no_final_checkpoint
from rlaif.training.monitor import watch_training
from rlaif.training.trl_args import (
    tracking_callbacks,
    train_and_save,
)

if TYPE_CHECKING:
    from rlaif.training.job import TrainJob

log = logging.getLogger(__name__)


def train_grpo(job: TrainJob, preferences: Dataset) -> Dataset:
    """Train with GRPO on the preferences' prompts; save the policy to ``output_dir/model``,
    the judges' per-step account to ``output_dir/judge_log.json``; return the training log."""
    from trl import GRPOTrainer

    if job.judges is None or job.store is None:
        raise ConfigError("train: method 'grpo' needs the pipeline's judges and judgment store")
    grpo = job.cfg.grpo
    folder = job.checkpoint_dir / "grpo"
    model_path = resolve_model(job.model, field="model")
    args = job.trl_args("grpo", grpo, folder)
    monitor = job.monitor()
    tokenizer = load_tokenizer(model_path, padding_side="left")
    with JudgmentStore(job.store) as store:
        budget = Budget(job.judges.max_cost_usd)
        if job.reward is not None and job.reward.components:
            from rlaif.rewards import MixedReward, TrlReward

            mixed = MixedReward(
                job.judges, job.reward, store, budget, log_path=job.output_dir / "reward_log.jsonl"
            )
            column = "reference" if job.references else None
            reward: Any = TrlReward(mixed, reference_column=column, name="reward")
            accounts = mixed.steps
        else:
            reward = JudgeReward(job.judges, store, budget)
            accounts = reward.steps
        trainer = GRPOTrainer(
            model=str(model_path),
            reward_funcs=[reward],
            args=args,
            train_dataset=grpo_prompts(preferences, job.references),
            processing_class=tokenizer,
            callbacks=[
                no_final_checkpoint(),
                *tracking_callbacks(job.cfg.report_to, folder),
            ],
        )
        if isinstance(reward, JudgeReward):
            reward.trainer = trainer
        if monitor is not None:
            watch_training(trainer, monitor, tokenizer)
        try:
            history = train_and_save(trainer, "grpo", folder, job.output_dir)
        finally:
            if not isinstance(reward, JudgeReward):
                reward.close()  # a python check's worker processes end with training
    if monitor is not None:
        monitor.finish(job.output_dir)
    if trainer.is_world_process_zero():
        (job.output_dir / "judge_log.json").write_text(json.dumps(accounts, indent=1))
    return history


def grpo_prompts(preferences: Dataset, references: dict[str, str] | None = None) -> Dataset:
    """One row per prompt of the preferences: the conversation GRPO prompts the policy with,
    its text as the judges see it, the SFT answers completions are judged against, and (with
    ``references``, by ``prompt_id``) the prompt's reference answer for reward components."""
    seen: dict[str, dict[str, Any]] = {}
    if "prompt_id" not in preferences.column_names:
        references = None  # no way to tell which prompt a reference is for
    columns = ["prompt", "chosen", "rejected", *(["prompt_id"] if references is not None else [])]
    rows = preferences.select_columns(columns)
    for row, judged in zip(rows, prompts_of(rows["prompt"]), strict=True):
        entry = {
            "prompt": row["prompt"],
            "prompt_text": judged,
            "baselines": [row["chosen"][-1]["content"], row["rejected"][-1]["content"]],
        }
        if references is not None:
            entry["reference"] = references.get(row["prompt_id"])
        seen.setdefault(stable_hash(judged), entry)
    return Dataset.from_list(list(seen.values()))
