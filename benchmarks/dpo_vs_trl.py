"""The DPO train stage next to a bare ``trl.DPOTrainer`` with the same data and arguments.

Both sides start from the embedded model on disk, train ``--steps`` DPO steps on the same
preference rows with the same ``DPOConfig`` (learning rate, batch, lengths, precision,
seed) and save the trained model, which is what a user gluing TRL together would write.
The stage adds what it needs to be resumable (checkpoint folder, log history, dataset
checks); the figure is seconds per step, from model load to saved model, medians of
interleaved repeats. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from bench_common import emit, interleaved, median, quiet
from datasets import Dataset

from rlaif.config import DpoConfig, PromptsConfig, TrainConfig
from rlaif.models.devices import trainer_precision
from rlaif.models.loading import DEFAULT_MODEL, load_tokenizer, resolve_model
from rlaif.prompts import load_prompts
from rlaif.stages import train


def preferences(rows: int) -> Dataset:
    """Conversational prompt/chosen/rejected rows over the built-in prompts."""
    prompts = load_prompts(PromptsConfig()).select(range(rows))["prompt"]
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": p}] for p in prompts],
            "chosen": [[{"role": "assistant", "content": "A short, direct answer."}]] * rows,
            "rejected": [
                [{"role": "assistant", "content": "A long answer that repeats itself. " * 6}]
            ]
            * rows,
        }
    )


def raw_dpo(model_path: Path, data: Dataset, cfg: TrainConfig, out: Path) -> None:
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    tokenizer = load_tokenizer(model_path)
    policy = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(out / "dpo"),
        beta=cfg.dpo.beta,
        loss_type=[cfg.dpo.loss_type],
        learning_rate=cfg.dpo.learning_rate,
        max_steps=cfg.dpo.max_steps,
        per_device_train_batch_size=cfg.dpo.per_device_train_batch_size,
        max_length=cfg.dpo.max_length,
        logging_steps=cfg.dpo.logging_steps,
        seed=cfg.seed,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        **trainer_precision(cfg.dtype),
    )
    trainer = DPOTrainer(model=policy, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(out / "model"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    quiet()
    model_path = Path(resolve_model(DEFAULT_MODEL))
    data = preferences(args.steps * args.batch_size)
    cfg = TrainConfig(
        method="dpo",
        dpo=DpoConfig(
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            max_length=args.max_length,
        ),
    )

    def rlaif_side() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train(data, cfg, model=DEFAULT_MODEL, output_dir=Path(tmp))
            return (time.perf_counter() - start) / args.steps

    def raw_side() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            raw_dpo(model_path, data, cfg, Path(tmp))
            return (time.perf_counter() - start) / args.steps

    warm = cfg.model_copy(update={"dpo": cfg.dpo.model_copy(update={"max_steps": 1})})
    with tempfile.TemporaryDirectory() as tmp:  # imports and page cache, outside the timings
        raw_dpo(model_path, data.select(range(args.batch_size)), warm, Path(tmp))
    figures = interleaved({"rlaif": rlaif_side, "raw": raw_side}, args.repeats)
    rlaif_s, raw_s = median(figures["rlaif"]), median(figures["raw"])
    print(
        f"DPO train stage: {rlaif_s:.2f} s/step, bare DPOTrainer: {raw_s:.2f} s/step "
        f"(ratio {rlaif_s / raw_s:.3f}, goal <= 1.05); {args.steps} steps x batch "
        f"{args.batch_size}, max_length {args.max_length}, medians of {args.repeats}"
    )
    emit(
        {
            "benchmark": "dpo_vs_trl",
            "unit": "s/step",
            "rlaif_s_per_step": round(rlaif_s, 3),
            "raw_s_per_step": round(raw_s, 3),
            "ratio": round(rlaif_s / raw_s, 3),
            "goal": "<= 1.05",
            "steps": args.steps,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "precision": trainer_precision(cfg.dtype),
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
        }
    )


if __name__ == "__main__":
    main()
