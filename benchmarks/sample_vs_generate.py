"""The sample stage (transformers backend) next to a bare batched ``model.generate``.

Both sides load the embedded model, render the same prompts with its chat template and
generate ``n`` samples per prompt in the same batches (the stage's longest-first order),
with the same sampling settings, dtype and seed, so they produce the same tokens: the
difference is the stage's own overhead (rendering, batching, decoding, progress, datasets
columns). Tokens are counted alike on both sides: generated tokens up to the end-of-turn
token. The sides alternate over ``--repeats`` runs; the figures are medians.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_common import emit, interleaved, median, quiet
from datasets import Dataset
from transformers import AutoModelForCausalLM

from rlaif.config import PromptsConfig, SampleConfig
from rlaif.models.devices import hardware, pick_dtype
from rlaif.models.loading import DEFAULT_MODEL, load_tokenizer, resolve_model
from rlaif.prompts import load_prompts
from rlaif.stages import sample


def raw_generate(model_path, prompts: list[str], cfg: SampleConfig) -> tuple[int, list[str]]:
    """What a user would write with transformers alone; returns (tokens, texts)."""
    tokenizer = load_tokenizer(model_path, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, cfg.dtype))
    lm.eval()
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    per_batch = max(1, cfg.batch_size // cfg.n)
    stop_ids = torch.tensor([tokenizer.eos_token_id])
    torch.manual_seed(cfg.seed)
    tokens = 0
    outputs: list[list[str]] = [[] for _ in texts]
    with torch.inference_mode():
        for start in range(0, len(order), per_batch):
            idx = order[start : start + per_batch]
            enc = tokenizer(
                [texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
            )
            out = lm.generate(
                **enc,
                do_sample=True,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                top_k=None,
                max_new_tokens=cfg.max_new_tokens,
                num_return_sequences=cfg.n,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            stops = torch.isin(new, stop_ids)
            kept = torch.where(stops.any(1), stops.int().argmax(1), new.shape[1])
            tokens += int(kept.sum())
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            for row, text in enumerate(decoded):
                outputs[idx[row // cfg.n]].append(text.strip())
    return tokens, [t for texts_of in outputs for t in texts_of]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16, help="sequences per generate call")
    parser.add_argument("--dtype", default="auto", help="auto (for this machine), float32, ...")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quiet()
    args.dtype = pick_dtype(args.dtype, hardware())

    cfg = SampleConfig(
        backend="transformers",
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        dtype=args.dtype,
    )
    model_path = resolve_model(DEFAULT_MODEL)
    prompts = load_prompts(PromptsConfig()).select(range(args.prompts))
    texts = list(prompts["prompt"])
    same: list[bool] = []

    def run_rlaif(ds: Dataset = prompts, c: SampleConfig = cfg) -> tuple[int, list[str]]:
        out = sample(ds, c, model=DEFAULT_MODEL)
        return sum(map(sum, out["n_tokens"])), [t for r in out["responses"] for t in r]

    # Warm-up: imports, kernel selection and the page cache, outside the timings.
    small = cfg.model_copy(update={"max_new_tokens": 4})
    run_rlaif(prompts.select(range(2)), small)
    raw_generate(model_path, texts[:2], small)

    results: dict[str, tuple[int, list[str]]] = {}
    last_tokens: dict[str, int] = {}

    def side(name: str, fn):
        def run() -> float:
            start = time.perf_counter()
            tokens, outs = fn()
            seconds = time.perf_counter() - start
            last_tokens[name] = tokens
            results[name] = (tokens, outs)
            if len(results) == 2:
                same.append(results["rlaif"][1] == results["raw"][1])
                results.clear()
            return tokens / seconds

        return run

    figures = interleaved(
        {
            "rlaif": side("rlaif", run_rlaif),
            "raw": side("raw", lambda: raw_generate(model_path, texts, cfg)),
        },
        args.repeats,
    )
    rlaif_tps, raw_tps = median(figures["rlaif"]), median(figures["raw"])
    print(
        f"sample stage: {rlaif_tps:.1f} tokens/s, bare generate: {raw_tps:.1f} tokens/s "
        f"(ratio {rlaif_tps / raw_tps:.3f}, goal >= 0.95); {args.prompts} prompts x {args.n} "
        f"x {args.max_new_tokens} tokens, {args.dtype}, medians of {args.repeats}; "
        f"same outputs on both sides: {all(same)}"
    )
    emit(
        {
            "benchmark": f"sample_vs_generate ({args.dtype})",
            "unit": "tokens/s",
            "rlaif_tokens_per_s": round(rlaif_tps, 1),
            "raw_tokens_per_s": round(raw_tps, 1),
            "ratio": round(rlaif_tps / raw_tps, 3),
            "goal": ">= 0.95",
            "same_outputs": all(same),
            "tokens": last_tokens["rlaif"],
            "prompts": args.prompts,
            "n": args.n,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "dtype": args.dtype,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
        }
    )


if __name__ == "__main__":
    main()
