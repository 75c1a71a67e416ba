"""Stage 5: train the policy on the preferences.

DPO through ``trl.DPOTrainer`` (the SFT model is its own reference), or a reward model
then PPO with a KL penalty to the SFT model, or PPO scored directly by a judge (d-RLAIF).
The stage checks its inputs and describes the run as a :class:`TrainJob`; the job runs in
this process, or under ``accelerate launch`` when ``train.accelerate_config`` is set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from rlaif.config import JudgeConfig, RewardConfig, TrainConfig
from rlaif.errors import ConfigError
from rlaif.run.datasets_io import fresh_dir, load_dir, replace_dir, save_atomic

if TYPE_CHECKING:
    from rlaif.run.context import Run


def step(run: Run) -> dict[str, Any]:
    """The stage in a run: built in ``train.tmp`` and renamed into place; checkpoints live
    outside it, keyed by what is trained, so an interrupted run resumes."""
    target = run.dir.output("train")
    tmp = fresh_dir(target.with_name(target.name + ".tmp"))
    preferences = load_dir(run.train_input) if run.train_input else run.input("aggregate")
    start = run.start
    history = train(
        preferences,
        run.cfg.train,
        model=str(start.path) if start else run.cfg.model,
        reference=run.cfg.model if start and start.reference == "sft" else None,
        output_dir=tmp,
        prompts=run.train_prompts,
        judges=run.cfg.judge,
        checkpoint_dir=run.dir.checkpoints(run.fingerprint("train")),
        system_prompt=run.cfg.sample.system_prompt,
        store=run.cfg.judgment_store_path(),
        monitor_prompts=list(run.heldout["prompt"]),
        reward=run.cfg.reward,
        references=_references(run.train_prompts),
    )
    save_atomic(history, tmp / "log")
    replace_dir(tmp, target)
    counts: dict[str, Any] = {"method": run.cfg.train.method}
    for column in ("loss", "reward", "kl"):  # DPO logs a loss; PPO a reward and a KL
        if column in history.column_names:
            series = [x for x in history[column] if x is not None]
            counts[f"first_{column}"] = series[0] if series else None
            counts[f"last_{column}"] = series[-1] if series else None
    for name, key in (("reward_model_metrics.json", "reward_model"), ("monitor.json", "monitor")):
        if (target / name).exists():
            counts[key] = json.loads((target / name).read_text())
    return counts


def _references(prompts: Dataset) -> dict[str, str] | None:
    """The training prompts' reference answers by ``prompt_id``, where they have one."""
    if "reference" not in prompts.column_names:
        return None
    return {p: r for p, r in zip(prompts["prompt_id"], prompts["reference"], strict=True) if r}


def train(
    preferences: Dataset,
    cfg: TrainConfig,
    *,
    model: str,
    output_dir: Path,
    prompts: Dataset | None = None,
    judges: JudgeConfig | None = None,
    checkpoint_dir: Path | None = None,
    system_prompt: str | None = None,
    store: Path | None = None,
    reference: str | None = None,
    monitor_prompts: list[str] | None = None,
    reward: RewardConfig | None = None,
    references: dict[str, str] | None = None,
) -> Dataset:
    """Train, save the policy to ``output_dir/model`` and return the training log as a dataset.

    PPO methods sample from ``prompts`` (the training prompts), shown after
    ``system_prompt`` as sampling showed them; ``d_rlaif`` scores rollouts with the first of
    ``judges``; ``grpo`` asks all of them, through the judgment ``store``. Checkpoints go to
    ``checkpoint_dir`` (default ``output_dir/checkpoints``), and training resumes from the
    newest one found there. Training starts from ``model``; DPO's reference is ``reference``
    when given (an on-policy round: the SFT model), else ``model`` too. ``train.monitor``
    watches the policy answer ``monitor_prompts`` (held-out ones). GRPO rewards what
    ``reward`` names when it has components, with the prompts' ``references``.
    """
    # torch and TRL load only when something trains, so the CLI's other commands start fast
    from rlaif.training.job import TRL_COLUMNS, TrainJob
    from rlaif.training.launch import launch_training
    from rlaif.training.methods import run_job

    needed = [*TRL_COLUMNS, *(["p_chosen"] if cfg.method == "dpo" and cfg.dpo.soft_labels else [])]
    missing = [c for c in needed if c not in preferences.column_names]
    if missing:
        raise ConfigError(f"train: the preference dataset lacks column(s) {', '.join(missing)}")
    if len(preferences) == 0:
        raise ConfigError("train: the preference dataset is empty (every pair was dropped?)")
    if reference is not None and cfg.method != "dpo":
        raise ConfigError(
            f"train: method '{cfg.method}' keeps its start model as the KL anchor; only dpo "
            "takes a separate reference"
        )
    if cfg.monitor is not None and not monitor_prompts:
        raise ConfigError("train.monitor: no held-out prompts to watch (prompts.eval_size > 0)")
    if cfg.method in ("rm_ppo", "d_rlaif") and prompts is None:
        raise ConfigError(f"train: method '{cfg.method}' needs the training prompts")
    job = TrainJob(
        cfg=cfg,
        model=model,
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir or output_dir / "checkpoints",
        judges=judges,
        system_prompt=system_prompt,
        store=store,
        reference=reference,
        monitor_prompts=tuple(monitor_prompts or ()),
        reward=reward,
        references=references,
    )
    if cfg.accelerate_config:
        return launch_training(job, preferences, prompts)
    return run_job(job, preferences, prompts)
