"""A reward model from the preference dataset, with its held-out pairwise accuracy.

Trained by ``trl.RewardTrainer`` on a sequence-classification head over the SFT model,
fully or with LoRA (``peft``); scored the same way it is trained (chat template over prompt
and answer), so PPO and evaluation read rewards exactly as training saw them.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from datasets import Dataset

from rlaif.chat import Prompt, chat
from rlaif.config import RewardModelConfig
from rlaif.errors import ConfigError
from rlaif.models.devices import resolve_dtype
from rlaif.models.loading import load_tokenizer, resolve_model
from rlaif.training.checkpoints import (
    last_trainer_checkpoint,
    no_final_checkpoint,
    remove_trainer_checkpoints,
)
from rlaif.training.trl_args import tracking_callbacks, trainer_args, trl_config

log = logging.getLogger(__name__)
METRICS = "reward_model_metrics.json"


def train_reward_model(
    preferences: Dataset,
    cfg: RewardModelConfig,
    *,
    model: str,
    output_dir: Path,
    checkpoint_dir: Path | None = None,
    save_steps: int = 10,
    dtype: str = "auto",
    report_to: Sequence[str] = (),
) -> dict:
    """Train, save to ``output_dir/reward_model`` and return metrics (held-out accuracy).

    Trainer checkpoints go to ``checkpoint_dir/reward_model`` (default
    ``output_dir/checkpoints``) and a stopped run resumes from the newest; a reward model
    finished there before (``final/``) is reused instead of trained again.
    """
    if len(preferences) < 2:
        raise ConfigError("reward model: need at least two preferences")
    folder = (checkpoint_dir or output_dir / "checkpoints") / "reward_model"
    final = folder / "final"
    if (final / METRICS).is_file():
        log.info("reward model: reusing the one finished in %s", final)
    else:
        _train(
            preferences,
            cfg,
            model=model,
            folder=folder,
            save_steps=save_steps,
            dtype=dtype,
            report_to=report_to,
        )
    from accelerate import PartialState

    if PartialState().is_main_process:
        shutil.copytree(final, output_dir / "reward_model", dirs_exist_ok=True)
        shutil.copy(final / METRICS, output_dir / METRICS)
    PartialState().wait_for_everyone()
    return json.loads((final / METRICS).read_text())


def _train(
    preferences: Dataset,
    cfg: RewardModelConfig,
    *,
    model: str,
    folder: Path,
    save_steps: int,
    dtype: str,
    report_to: Sequence[str],
) -> None:
    """Train into ``folder`` (resuming its newest checkpoint) and publish ``folder/final`` with
    the model, its tokenizer and its metrics; then drop the trainer checkpoints."""
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification
    from trl import RewardTrainer

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
    args = trl_config(
        "reward_model",
        cfg,
        trainer_args(
            output_dir=folder,
            seed=cfg.seed,
            save_steps=save_steps,
            dtype=dtype,
            report_to=report_to,
        ),
    )
    peft_config = LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r) if cfg.lora else None
    trainer = RewardTrainer(
        model=net,
        args=args,
        train_dataset=train_set,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[no_final_checkpoint(), *tracking_callbacks(report_to, folder)],
    )
    last = last_trainer_checkpoint(folder)
    if last:
        log.info("reward model: resuming from %s", last)
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    if trainer.accelerator.is_main_process:
        trained = trainer.model.merge_and_unload() if cfg.lora else trainer.model
        tmp = folder / "final.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        trained.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        metrics = {"train_pairs": len(train_set), "steps": cfg.max_steps}
        if split:
            scorer = RewardScorer(tmp, dtype=dtype)
            chosen = scorer.score(split["test"]["prompt"], split["test"]["chosen"])
            rejected = scorer.score(split["test"]["prompt"], split["test"]["rejected"])
            metrics["heldout_pairs"] = len(chosen)
            metrics["heldout_accuracy"] = sum(
                c > r for c, r in zip(chosen, rejected, strict=True)
            ) / len(chosen)
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2))
        tmp.rename(folder / "final")
        remove_trainer_checkpoints(folder)
    trainer.accelerator.wait_for_everyone()


class RewardScorer:
    """Scores (prompt, answer) conversations with a trained reward model, on this process's
    device (each GPU of a multi-GPU PPO run scores its own rollouts)."""

    def __init__(
        self,
        path: Path | str,
        batch_size: int = 16,
        dtype: str = "auto",
        system_prompt: str | None = None,
    ):
        from accelerate import PartialState
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = PartialState().device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        resolved = resolve_dtype(dtype, where="reward scoring")
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=getattr(torch, resolved)
        )
        self.model.eval().to(self.device)
        self.batch_size = batch_size
        self.system_prompt = system_prompt
        """Shown before a prompt that does not start with a system message of its own."""

    @torch.inference_mode()
    def score(self, prompts: list, answers: list) -> list[float]:
        texts = [
            self.tokenizer.apply_chat_template(
                _shown(p, self.system_prompt) + _answer(a),
                tokenize=False,
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
            ).to(self.device)
            out.extend(self.model(**enc).logits[:, 0].float().tolist())
        return out


def _answer(value: list | str) -> list[dict[str, str]]:
    return value if isinstance(value, list) else [{"role": "assistant", "content": value}]


def _shown(prompt: Prompt, system_prompt: str | None) -> list[dict[str, str]]:
    """The conversation an answer is scored in: a preference's prompt as it is (it holds
    the system prompt its answers were sampled under), else the prompt behind the system
    prompt, as sampling showed it."""
    if isinstance(prompt, list) and prompt and prompt[0]["role"] == "system":
        return list(prompt)
    return chat(prompt, system_prompt)
