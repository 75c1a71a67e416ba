"""A reward model from the preference dataset, with its held-out pairwise accuracy.

Trained by ``trl.RewardTrainer`` on a sequence-classification head over the SFT model,
fully or with LoRA (``peft``); scored the same way it is trained (chat template over prompt
and answer), so PPO and evaluation read rewards exactly as training saw them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from datasets import Dataset

from rlaif.config import RewardModelConfig
from rlaif.errors import ConfigError
from rlaif.models import load_tokenizer, resolve_model


def train_reward_model(
    preferences: Dataset, cfg: RewardModelConfig, *, model: str, output_dir: Path
) -> dict:
    """Train, save to ``output_dir/reward_model`` and return metrics (held-out accuracy)."""
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    if len(preferences) < 2:
        raise ConfigError("reward model: need at least two preferences")
    columns = [
        c for c in ("prompt", "chosen", "rejected", "margin") if c in preferences.column_names
    ]
    split = (
        preferences.select_columns(columns).train_test_split(
            test_size=max(1, round(cfg.eval_fraction * len(preferences))), seed=cfg.seed
        )
        if cfg.eval_fraction > 0
        else None
    )
    train_set = split["train"] if split else preferences.select_columns(columns)
    path = resolve_model(model, field="model")
    tokenizer = load_tokenizer(path)
    net = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=torch.float32
    )
    net.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(
        output_dir=str(output_dir / "checkpoints"),
        learning_rate=cfg.learning_rate,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        max_length=cfg.max_length,
        seed=cfg.seed,
        save_strategy="no",
        report_to=[],
        logging_steps=1,
        use_cpu=not torch.cuda.is_available(),
        dataset_num_proc=None,
    )
    peft_config = LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r) if cfg.lora else None
    trainer = RewardTrainer(
        model=net,
        args=args,
        train_dataset=train_set,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.train()
    trained = trainer.model.merge_and_unload() if cfg.lora else trainer.model
    target = output_dir / "reward_model"
    trained.save_pretrained(target)
    tokenizer.save_pretrained(target)
    metrics = {"train_pairs": len(train_set), "steps": cfg.max_steps}
    if split:
        scorer = RewardScorer(target)
        chosen = scorer.score(split["test"]["prompt"], split["test"]["chosen"])
        rejected = scorer.score(split["test"]["prompt"], split["test"]["rejected"])
        metrics["heldout_pairs"] = len(chosen)
        metrics["heldout_accuracy"] = sum(
            c > r for c, r in zip(chosen, rejected, strict=True)
        ) / len(chosen)
    (output_dir / "reward_model_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


class RewardScorer:
    """Scores (prompt, answer) conversations with a trained reward model."""

    def __init__(self, path: Path | str, batch_size: int = 16):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        self.batch_size = batch_size

    @torch.inference_mode()
    def score(self, prompts: list, answers: list) -> list[float]:
        texts = [
            self.tokenizer.apply_chat_template(
                _messages(p) + _messages(a, "assistant"), tokenize=False
            )
            for p, a in zip(prompts, answers, strict=True)
        ]
        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                add_special_tokens=False,
            )
            out.extend(self.model(**enc).logits[:, 0].float().tolist())
        return out


def _messages(value: list | str, role: str = "user") -> list[dict[str, str]]:
    return value if isinstance(value, list) else [{"role": role, "content": value}]
