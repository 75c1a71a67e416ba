"""The ``TrainingArguments`` every TRL trainer here shares (DPO and the reward model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rlaif.devices import trainer_precision


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
