"""The one function that runs a :class:`TrainJob`, whichever its method: DPO, a reward model
then PPO, d-RLAIF's PPO scored by a judge, or GRPO. The train stage calls it in this process,
or hands the job to ``accelerate launch`` (:mod:`rlaif.training.launch`), whose every process
runs it the same way."""

from __future__ import annotations

import torch
from datasets import Dataset

from rlaif.errors import ConfigError
from rlaif.judges import Budget
from rlaif.judging.reward import PointwiseReward
from rlaif.judging.store import JudgmentStore
from rlaif.models.loading import load_tokenizer, resolve_model
from rlaif.training.checkpoints import no_final_checkpoint
from rlaif.training.job import TRL_COLUMNS, TrainJob
from rlaif.training.monitor import watch_training
from rlaif.training.ppo import RewardFn, train_ppo
from rlaif.training.reward_model import RewardScorer, train_reward_model
from rlaif.training.trl_args import tracking_callbacks, train_and_save


def run_job(job: TrainJob, preferences: Dataset, prompts: Dataset | None) -> Dataset:
    """Train in this process (which may be one of several ``accelerate`` started); returns
    the training log, one row per logged step."""
    cfg = job.cfg
    if cfg.method == "dpo":
        return _dpo(job, preferences)
    if cfg.method == "grpo":
        from rlaif.training.grpo import train_grpo

        return train_grpo(job, preferences)
    assert prompts is not None
    if cfg.method == "rm_ppo":
        train_reward_model(
            preferences,
            cfg.reward_model,
            model=job.model,
            output_dir=job.output_dir,
            checkpoint_dir=job.checkpoint_dir,
            save_steps=cfg.save_steps,
            dtype=cfg.dtype,
            report_to=cfg.report_to,
        )
        scorer = RewardScorer(
            job.output_dir / "reward_model", dtype=cfg.dtype, system_prompt=job.system_prompt
        )
        return _ppo(job, prompts, scorer.score)
    if job.judges is None or job.store is None:
        raise ConfigError("train: method 'd_rlaif' needs the pipeline's judges and judgment store")
    with JudgmentStore(job.store) as store:
        reward = PointwiseReward(job.judges, store, Budget(job.judges.max_cost_usd))
        return _ppo(job, prompts, reward)


def _ppo(job: TrainJob, prompts: Dataset, reward_fn: RewardFn) -> Dataset:
    cfg = job.cfg
    return train_ppo(
        prompts,
        cfg.ppo,
        model=job.model,
        reward_fn=reward_fn,
        output_dir=job.output_dir,
        checkpoint_dir=job.checkpoint_dir,
        save_steps=cfg.save_steps,
        dtype=cfg.dtype,
        system_prompt=job.system_prompt,
        report_to=cfg.report_to,
        monitor=job.monitor(),
    )


def _dpo(job: TrainJob, preferences: Dataset) -> Dataset:
    from transformers import AutoModelForCausalLM
    from trl import DPOTrainer

    from rlaif.training.soft_dpo import SOFT_COLUMN, SoftLabelDPOTrainer

    dpo = job.cfg.dpo
    folder = job.checkpoint_dir / "dpo"
    model_path = resolve_model(job.model, field="model")
    tokenizer = load_tokenizer(model_path)
    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    reference = (
        AutoModelForCausalLM.from_pretrained(
            resolve_model(job.reference, field="reference"), dtype=torch.float32
        )
        if job.reference
        else None
    )
    args = job.trl_args("dpo", dpo, folder)
    columns = [*TRL_COLUMNS, *([SOFT_COLUMN] if dpo.soft_labels else [])]
    monitor = job.monitor()
    trainer = (SoftLabelDPOTrainer if dpo.soft_labels else DPOTrainer)(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=preferences.select_columns(columns),
        processing_class=tokenizer,
        callbacks=[
            no_final_checkpoint(),
            *tracking_callbacks(job.cfg.report_to, folder),
        ],
    )
    if monitor is not None:
        watch_training(trainer, monitor, tokenizer)
    history = train_and_save(trainer, "dpo", folder, job.output_dir)
    if monitor is not None:
        monitor.finish(job.output_dir)
    return history
