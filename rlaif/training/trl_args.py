"""The ``TrainingArguments`` every TRL trainer here shares (DPO and the reward model)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from rlaif.models.devices import trainer_precision
from rlaif.training.checkpoints import last_trainer_checkpoint

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
