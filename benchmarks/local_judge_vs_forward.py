"""The transformers judge next to a bare batched forward pass reading the same two logits.

Both sides load the embedded model in the same dtype, render the same comparisons with the
rubric (both orders of every pair) through the model's chat template, run them in batches
of the same size and read P(A) and P(B) from the logits after the prompt. The judge adds
what the stage needs per request (length check, verdict records) and what it does to be fast
(longest requests batched together, the output layer run for the last position only); the
raw side is what a user would write with transformers alone. Figures are pairs/s, medians of
interleaved repeats; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_common import emit, interleaved, median, quiet

from rlaif.config import PromptsConfig, TransformersJudgeConfig
from rlaif.judges import Budget, JudgeRequest, Verdict
from rlaif.judges.transformers import TransformersJudge
from rlaif.models.devices import hardware, pick_dtype
from rlaif.models.loading import DEFAULT_MODEL, load_tokenizer, resolve_model
from rlaif.prompts import load_prompts
from rlaif.rubrics import load_rubric


def make_requests(pairs: int) -> list[JudgeRequest]:
    """Both orders of ``pairs`` comparisons over the built-in prompts, answers of mixed length."""
    prompts = load_prompts(PromptsConfig()).select(range(pairs))["prompt"]
    requests = []
    for i, prompt in enumerate(prompts):
        short = f"Here is a short answer to that ({i})."
        long = "Here is a longer answer, with a reason and an example. " * (1 + i % 4)
        requests += [JudgeRequest(prompt, short, long), JudgeRequest(prompt, long, short)]
    return requests


def raw_forward(model_path, dtype: str, rubric_name: str, requests, batch_size: int):
    """Load, render, batch, forward, softmax over the two label logits: P(first) per request."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).eval()
    rubric = load_rubric(rubric_name)
    label_ids = [tokenizer.encode(label, add_special_tokens=False)[0] for label in rubric.labels]
    texts = [
        tokenizer.apply_chat_template(
            rubric.messages(r.prompt, r.first, r.second),
            tokenize=False,
            add_generation_prompt=True,
        )
        for r in requests
    ]
    p_first = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                texts[start : start + batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            logits = model(**enc).logits[:, -1, label_ids].float()
            p_first += logits.softmax(-1)[:, 0].tolist()
    return p_first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="auto", help="auto (for this machine), float32, ...")
    parser.add_argument("--rubric", default="helpful_harmless")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quiet()
    dtype = pick_dtype(args.dtype, hardware())
    model_path = resolve_model(DEFAULT_MODEL)
    requests = make_requests(args.pairs)
    cfg = TransformersJudgeConfig(rubric=args.rubric, batch_size=args.batch_size, dtype=dtype)
    answers: dict[str, list[float]] = {}

    def rlaif_side() -> float:
        start = time.perf_counter()
        judge = TransformersJudge(cfg)  # a fresh judge: it loads the model like the raw side
        verdicts: dict[int, Verdict] = {}
        judge.run(requests, verdicts.__setitem__, Budget())  # as the judge stage calls it
        seconds = time.perf_counter() - start
        answers["rlaif"] = [verdicts[i].p_first for i in range(len(requests))]
        return args.pairs / seconds

    def raw_side() -> float:
        start = time.perf_counter()
        answers["raw"] = raw_forward(model_path, dtype, args.rubric, requests, args.batch_size)
        return args.pairs / (time.perf_counter() - start)

    raw_forward(model_path, dtype, args.rubric, requests[:2], 2)  # warm-up, outside the timings
    figures = interleaved({"rlaif": rlaif_side, "raw": raw_side}, args.repeats)
    max_diff = max(abs(a - b) for a, b in zip(answers["rlaif"], answers["raw"], strict=True))
    rlaif_pps, raw_pps = median(figures["rlaif"]), median(figures["raw"])
    print(
        f"transformers judge: {rlaif_pps:.2f} pairs/s, bare forward: {raw_pps:.2f} pairs/s "
        f"(ratio {rlaif_pps / raw_pps:.3f}); {args.pairs} pairs x 2 orders, {dtype}, "
        f"batch {args.batch_size}; largest P(first) difference {max_diff:.2e}"
    )
    emit(
        {
            "benchmark": f"local_judge_vs_forward ({dtype})",
            "unit": "pairs/s",
            "rlaif_pairs_per_s": round(rlaif_pps, 2),
            "raw_pairs_per_s": round(raw_pps, 2),
            "ratio": round(rlaif_pps / raw_pps, 3),
            "goal": ">= 0.95",
            "max_p_first_diff": max_diff,
            "pairs": args.pairs,
            "batch_size": args.batch_size,
            "dtype": dtype,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
        }
    )


if __name__ == "__main__":
    main()
