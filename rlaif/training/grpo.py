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
from rlaif.training.trl_args import tracking_callbacks, train_and_save, trainer_args

if TYPE_CHECKING:
    from rlaif.training.job import TrainJob

log = logging.getLogger(__name__)


def train_grpo(job: TrainJob, preferences: Dataset) -> Dataset:
    """Train with GRPO on the preferences' prompts; save the policy to ``output_dir/model``,
    the judges' per-step account to ``output_dir/judge_log.json``; return the training log."""
    from trl import GRPOConfig, GRPOTrainer

    if job.judges is None or job.store is None:
        raise ConfigError("train: method 'grpo' needs the pipeline's judges and judgment store")
    grpo = job.cfg.grpo
    folder = job.checkpoint_dir / "grpo"
    model_path = resolve_model(job.model, field="model")
    shared = trainer_args(
        output_dir=folder,
        seed=job.cfg.seed,
        save_steps=job.cfg.save_steps,
        dtype=job.cfg.dtype,
        logging_steps=grpo.logging_steps,
        report_to=job.cfg.report_to,
    )
    shared.pop("dataset_num_proc")  # GRPO prepares no dataset up front
    args = GRPOConfig(
        learning_rate=grpo.learning_rate,
        max_steps=grpo.max_steps,
        beta=grpo.beta,
        num_generations=grpo.num_generations,
        per_device_train_batch_size=grpo.per_device_train_batch_size,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        **shared,
    )
    monitor = job.monitor()
    tokenizer = load_tokenizer(model_path, padding_side="left")
    with JudgmentStore(job.store) as store:
        reward = JudgeReward(job.judges, store, Budget(job.judges.max_cost_usd))
        trainer = GRPOTrainer(
            model=str(model_path),
            reward_funcs=[reward],
            args=args,
            train_dataset=grpo_prompts(preferences),
            processing_class=tokenizer,
            callbacks=[
                no_final_checkpoint(),
                *tracking_callbacks(job.cfg.report_to, folder),
            ],
        )
        reward.trainer = trainer
        if monitor is not None:
            watch_training(trainer, monitor, tokenizer)
        history = train_and_save(trainer, "grpo", folder, job.output_dir)
    if monitor is not None:
        monitor.finish(job.output_dir)
    if trainer.is_world_process_zero():
        (job.output_dir / "judge_log.json").write_text(json.dumps(reward.steps, indent=1))
    return history


def grpo_prompts(preferences: Dataset) -> Dataset:
    """One row per prompt of the preferences: the conversation GRPO prompts the policy with,
    its text as the judges see it, and the SFT answers completions are judged against."""
    seen: dict[str, dict[str, Any]] = {}
    rows = preferences.select_columns(["prompt", "chosen", "rejected"])
    for row, judged in zip(rows, prompts_of(rows["prompt"]), strict=True):
        seen.setdefault(
            stable_hash(judged),
            {
                "prompt": row["prompt"],
                "prompt_text": judged,
                "baselines": [row["chosen"][-1]["content"], row["rejected"][-1]["content"]],
            },
        )
    return Dataset.from_list(list(seen.values()))
