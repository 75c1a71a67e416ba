"""Stage 5: train the policy on the preferences.

DPO through ``trl.DPOTrainer`` (the SFT model is its own reference), or a reward model
then PPO with a KL penalty to the SFT model, or PPO scored directly by a judge (d-RLAIF).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from datasets import Dataset

from rlaif.config import JudgeConfig, TrainConfig
from rlaif.devices import trainer_precision
from rlaif.errors import ConfigError
from rlaif.judges import Budget, JudgeRequest, Verdict, build_judge
from rlaif.models import load_tokenizer, resolve_model
from rlaif.training.checkpoints import last_trainer_checkpoint, no_final_checkpoint
from rlaif.training.launch import launch_training
from rlaif.training.ppo import RewardFn, train_ppo
from rlaif.training.reward_model import RewardScorer, train_reward_model

log = logging.getLogger(__name__)
TRL_COLUMNS = ("prompt", "chosen", "rejected")


def train(
    preferences: Dataset,
    cfg: TrainConfig,
    *,
    model: str,
    output_dir: Path,
    prompts: Dataset | None = None,
    judges: JudgeConfig | None = None,
    checkpoint_dir: Path | None = None,
) -> Dataset:
    """Train, save the policy to ``output_dir/model`` and return the training log as a dataset.

    PPO methods sample from ``prompts`` (the training prompts); ``d_rlaif`` scores rollouts
    with the first of ``judges``. Checkpoints go to ``checkpoint_dir`` (default
    ``output_dir/checkpoints``), and training resumes from the newest one found there. With
    ``cfg.accelerate_config`` the training runs under ``accelerate launch``.
    """
    missing = [c for c in TRL_COLUMNS if c not in preferences.column_names]
    if missing:
        raise ConfigError(f"train: the preference dataset lacks column(s) {', '.join(missing)}")
    if len(preferences) == 0:
        raise ConfigError("train: the preference dataset is empty (every pair was dropped?)")
    if cfg.method != "dpo" and prompts is None:
        raise ConfigError(f"train: method '{cfg.method}' needs the training prompts")
    checkpoint_dir = checkpoint_dir or output_dir / "checkpoints"
    run = launch_training if cfg.accelerate_config else run_training
    return run(
        preferences,
        cfg,
        model=model,
        output_dir=output_dir,
        prompts=prompts,
        judges=judges,
        checkpoint_dir=checkpoint_dir,
    )


def run_training(
    preferences: Dataset,
    cfg: TrainConfig,
    *,
    model: str,
    output_dir: Path,
    prompts: Dataset | None,
    judges: JudgeConfig | None,
    checkpoint_dir: Path,
) -> Dataset:
    """The training itself, in this process (which may be one of several ``accelerate``
    started)."""
    if cfg.method == "dpo":
        return _dpo(preferences, cfg, model=model, output_dir=output_dir, folder=checkpoint_dir)
    assert prompts is not None
    if cfg.method == "rm_ppo":
        train_reward_model(
            preferences,
            cfg.reward_model,
            model=model,
            output_dir=output_dir,
            checkpoint_dir=checkpoint_dir,
            save_steps=cfg.save_steps,
            dtype=cfg.dtype,
        )
        reward_fn = RewardScorer(output_dir / "reward_model", dtype=cfg.dtype).score
    else:
        reward_fn = judge_reward(judges)
    return train_ppo(
        prompts,
        cfg.ppo,
        model=model,
        reward_fn=reward_fn,
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir,
        save_steps=cfg.save_steps,
        dtype=cfg.dtype,
    )


def judge_reward(judges: JudgeConfig | None) -> RewardFn:
    """d-RLAIF: the first judge scores each rollout directly with a pointwise rubric."""
    if judges is None or not judges.judges:
        raise ConfigError("train: method 'd_rlaif' needs a judge")
    backend = build_judge(judges.judges[0])
    rubric = getattr(backend, "rubric", None)
    if rubric is None or rubric.mode != "pointwise":
        raise ConfigError(
            f"train: method 'd_rlaif' scores rollouts with judge '{backend.name}', whose rubric "
            "must be pointwise (e.g. ultrafeedback_helpfulness)"
        )

    def reward(prompts: list[str], responses: list[str]) -> list[float]:
        verdicts: dict[int, Verdict] = {}
        requests = [JudgeRequest(p, r, "") for p, r in zip(prompts, responses, strict=True)]
        backend.run(requests, verdicts.__setitem__, Budget())
        # an unreadable verdict scores as the middle of the scale: no push either way
        middle = (min(rubric.scores) + max(rubric.scores)) / 2
        return [
            v.score if v.status == "ok" else middle
            for v in (verdicts[i] for i in range(len(requests)))
        ]

    return reward


def _dpo(
    preferences: Dataset, cfg: TrainConfig, *, model: str, output_dir: Path, folder: Path
) -> Dataset:
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    model_path = resolve_model(model, field="model")
    tokenizer = load_tokenizer(model_path)
    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(folder / "dpo"),
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        warmup_steps=cfg.warmup_steps,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        **trainer_precision(cfg.dtype),
        dataset_num_proc=None,
    )
    trainer = DPOTrainer(
        model=policy,
        args=args,
        train_dataset=preferences.select_columns(list(TRL_COLUMNS)),
        processing_class=tokenizer,
        callbacks=[no_final_checkpoint()],
    )
    last = last_trainer_checkpoint(folder / "dpo")
    if last:
        log.info("dpo: resuming from %s", last)
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    final = output_dir / "model"
    trainer.save_model(str(final))
    history = trainer.state.log_history
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(final)
        (output_dir / "log_history.json").write_text(json.dumps(history, indent=1, default=str))
    keys = list(dict.fromkeys(k for entry in history for k in entry))
    return Dataset.from_dict({k: [_number(e.get(k)) for e in history] for k in keys})


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
