"""The arguments of the TRL trainers here (DPO, GRPO, the reward model): what every one
shares, what each takes from its config section, and the section's ``trl:`` pass-through for
any other argument of the trainer's config class, checked before anything runs."""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from datasets import Dataset
from pydantic import TypeAdapter, ValidationError

from rlaif.errors import ConfigError
from rlaif.models.devices import trainer_precision
from rlaif.training.checkpoints import last_trainer_checkpoint

if TYPE_CHECKING:
    from rlaif.config import DpoConfig, GrpoConfig, RewardModelConfig, TrainConfig

log = logging.getLogger(__name__)


def trainer_args(
    *,
    output_dir: Path,
    seed: int,
    save_steps: int,
    dtype: str,
    logging_steps: int = 1,
    report_to: Sequence[str] = (),
) -> dict[str, Any]:
    """Checkpoints every ``save_steps`` to resume from, the precision ``dtype`` resolves to
    on this machine, metrics reported only to the trackers in ``report_to`` (TensorBoard
    through :func:`tracking_callbacks`), the CPU when there is no GPU."""
    return {
        "output_dir": str(output_dir),
        "seed": seed,
        "logging_steps": logging_steps,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": 2,
        "report_to": [r for r in report_to if r != "tensorboard"],
        "use_cpu": not torch.cuda.is_available(),
        "dataset_num_proc": None,
        **trainer_precision(dtype),
    }


def dpo_arguments(dpo: DpoConfig, shared: dict[str, Any]) -> dict[str, Any]:
    """``trl.DPOConfig``'s arguments from ``train.dpo`` and the shared ones."""
    return {
        "beta": dpo.beta,
        "loss_type": [dpo.loss_type],
        "learning_rate": dpo.learning_rate,
        "max_steps": dpo.max_steps,
        "per_device_train_batch_size": dpo.per_device_train_batch_size,
        "gradient_accumulation_steps": dpo.gradient_accumulation_steps,
        "max_length": dpo.max_length,
        "warmup_steps": dpo.warmup_steps,
        "precompute_ref_log_probs": dpo.soft_labels,
        **shared,
    }


def grpo_arguments(grpo: GrpoConfig, shared: dict[str, Any]) -> dict[str, Any]:
    """``trl.GRPOConfig``'s arguments from ``train.grpo`` and the shared ones (GRPO prepares
    no dataset up front)."""
    return {
        "learning_rate": grpo.learning_rate,
        "max_steps": grpo.max_steps,
        "beta": grpo.beta,
        "num_generations": grpo.num_generations,
        "per_device_train_batch_size": grpo.per_device_train_batch_size,
        "max_completion_length": grpo.max_completion_length,
        "temperature": grpo.temperature,
        **{k: v for k, v in shared.items() if k != "dataset_num_proc"},
    }


def reward_model_arguments(rm: RewardModelConfig, shared: dict[str, Any]) -> dict[str, Any]:
    """``trl.RewardConfig``'s arguments from ``train.reward_model`` and the shared ones."""
    return {
        "learning_rate": rm.learning_rate,
        "max_steps": rm.max_steps,
        "per_device_train_batch_size": rm.per_device_train_batch_size,
        "max_length": rm.max_length,
        **shared,
    }


TRL_TRAINERS = {
    "dpo": ("DPOConfig", dpo_arguments),
    "grpo": ("GRPOConfig", grpo_arguments),
    "reward_model": ("RewardConfig", reward_model_arguments),
}
"""Each ``train:`` section with a ``trl:`` pass-through: its TRL config class and the
function that gives rlaif's own arguments of it."""


def trl_config(section: str, settings: Any, shared: dict[str, Any]) -> Any:
    """The trainer's TRL config: rlaif's arguments from ``settings`` (the section) and
    ``shared`` (:func:`trainer_args`), and the section's ``trl:`` arguments besides."""
    import trl

    name, arguments = TRL_TRAINERS[section]
    ours = arguments(settings, shared)
    _refuse_ours(section, settings, ours)
    return getattr(trl, name)(**ours, **settings.trl)


def check_trl(train: TrainConfig) -> None:
    """Preflight: each section's ``trl:`` arguments are arguments of the trainer's TRL config
    class, of its types, none that rlaif sets itself, and the class takes them together."""
    for section, (name, arguments) in TRL_TRAINERS.items():
        settings = getattr(train, section)
        if not settings.trl:
            continue
        import trl

        shared = trainer_args(
            output_dir=Path(tempfile.gettempdir()) / "rlaif-trl-check",
            seed=0,
            save_steps=1,
            dtype=train.dtype,
            report_to=train.report_to,
        )
        _refuse_ours(section, settings, arguments(settings, shared))
        cls = getattr(trl, name)
        fields = {f.name for f in dataclasses.fields(cls) if f.init}
        hints = typing.get_type_hints(cls)
        for key, value in settings.trl.items():
            where = f"train.{section}.trl.{key}"
            if key not in fields:
                near = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else ""
                raise ConfigError(f"{where}: not an argument of trl.{name}{hint}")
            _check_type(where, hints.get(key), value)
        try:
            cls(**arguments(settings, shared), **settings.trl)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"train.{section}.trl: trl.{name} refuses it: {exc}") from None


def _refuse_ours(section: str, settings: Any, ours: dict[str, Any]) -> None:
    for key in settings.trl:
        if key in ours:
            instead = (
                f"set train.{section}.{key} instead"
                if key in type(settings).model_fields
                else "it follows from the pipeline's settings"
            )
            raise ConfigError(f"train.{section}.trl.{key}: rlaif sets this argument ({instead})")


def _check_type(where: str, annotation: Any, value: Any) -> None:
    """``value`` against the argument's annotation, where pydantic can read it."""
    if annotation is None:
        return
    try:
        adapter = TypeAdapter(annotation)
    except Exception:  # an annotation pydantic cannot check: the class itself checks it
        return
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ConfigError(f"{where}: {value!r} is not a valid value ({problem})") from None


def tracking_callbacks(report_to: Sequence[str], folder: Path) -> list:
    """A TensorBoard writer under ``folder/tensorboard`` (the phase's checkpoint folder, kept
    across resumes) instead of the trainer's default place, when ``report_to`` asks for it."""
    if "tensorboard" not in report_to:
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(folder / "tensorboard")))]


def history_dataset(history: list[dict[str, Any]]) -> Dataset:
    """A trainer's ``log_history`` as the stage's log: one row per logged step, a column per
    key, numbers only."""
    keys = list(dict.fromkeys(k for entry in history for k in entry))
    return Dataset.from_dict({k: [_number(e.get(k)) for e in history] for k in keys})


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def train_and_save(trainer: Any, name: str, checkpoints: Path, output_dir: Path) -> Dataset:
    """Train (from the newest checkpoint under ``checkpoints``, if any), save the policy and
    its tokenizer to ``output_dir/model`` and the log beside it; returns the log."""
    last = last_trainer_checkpoint(checkpoints)
    if last:
        log.info("%s: resuming from %s", name, last)
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    final = output_dir / "model"
    trainer.save_model(str(final))
    history = trainer.state.log_history
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(final)
        (output_dir / "log_history.json").write_text(json.dumps(history, indent=1, default=str))
    return history_dataset(history)
