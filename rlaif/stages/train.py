"""Stage 5: train the policy on the preferences (DPO through ``trl.DPOTrainer``).

The SFT model is its own reference (TRL keeps a frozen copy). The reward-model +
PPO route is another ``method`` behind the same function.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from datasets import Dataset

from rlaif.config import TrainConfig
from rlaif.errors import ConfigError
from rlaif.models import resolve_model

log = logging.getLogger(__name__)
TRL_COLUMNS = ("prompt", "chosen", "rejected")


def train(preferences: Dataset, cfg: TrainConfig, *, model: str, output_dir: Path) -> Dataset:
    """Train, save the policy to ``output_dir/model`` and return the training log as a dataset."""
    missing = [c for c in TRL_COLUMNS if c not in preferences.column_names]
    if missing:
        raise ConfigError(f"train: the preference dataset lacks column(s) {', '.join(missing)}")
    if len(preferences) == 0:
        raise ConfigError("train: the preference dataset is empty (every pair was dropped?)")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    model_path = resolve_model(model, field="model")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(output_dir / "checkpoints"),
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
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        dataset_num_proc=None,
    )
    trainer = DPOTrainer(
        model=policy,
        args=args,
        train_dataset=preferences.select_columns(list(TRL_COLUMNS)),
        processing_class=tokenizer,
    )
    trainer.train()
    final = output_dir / "model"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(final)
    history = trainer.state.log_history
    (output_dir / "log_history.json").write_text(json.dumps(history, indent=1, default=str))
    keys = list(dict.fromkeys(k for entry in history for k in entry))
    return Dataset.from_dict({k: [_number(e.get(k)) for e in history] for k in keys})


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
