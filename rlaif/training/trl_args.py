"""The ``TrainingArguments`` every TRL trainer here shares (DPO and the reward model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rlaif.devices import trainer_precision


def trainer_args(
    *, output_dir: Path, seed: int, save_steps: int, dtype: str, logging_steps: int = 1
) -> dict[str, Any]:
    """Checkpoints every ``save_steps`` to resume from, the precision ``dtype`` resolves to
    on this machine, nothing reported to third parties, the CPU when there is no GPU."""
    return {
        "output_dir": str(output_dir),
        "seed": seed,
        "logging_steps": logging_steps,
        "save_strategy": "steps",
        "save_steps": save_steps,
        "save_total_limit": 2,
        "report_to": [],
        "use_cpu": not torch.cuda.is_available(),
        "dataset_num_proc": None,
        **trainer_precision(dtype),
    }
