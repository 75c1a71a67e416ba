"""The sample stage with ``dtype: auto`` next to the same stage forced to ``bfloat16``.

On a CPU without native bf16 (AVX2 only, no AVX512-BF16 or AMX) ``auto`` picks float32 and
bf16 is emulated, many times slower; on a CPU or GPU with native bf16 both sides run bf16 and
the ratio is about 1. Same prompts, settings and seed on both sides; medians of interleaved
repeats. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_common import emit, interleaved, median, quiet

from rlaif.config import PromptsConfig, SampleConfig
from rlaif.models.devices import hardware, pick_dtype
from rlaif.models.loading import DEFAULT_MODEL
from rlaif.prompts import load_prompts
from rlaif.stages import sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    quiet()
    prompts = load_prompts(PromptsConfig()).select(range(args.prompts))
    base = SampleConfig(backend="transformers", n=args.n, max_new_tokens=args.max_new_tokens)

    def side(dtype: str):
        cfg = base.model_copy(update={"dtype": dtype})

        def run() -> float:
            start = time.perf_counter()
            out = sample(prompts, cfg, model=DEFAULT_MODEL)
            return sum(map(sum, out["n_tokens"])) / (time.perf_counter() - start)

        return run

    sample(
        prompts.select(range(1)), base.model_copy(update={"max_new_tokens": 2}), model=DEFAULT_MODEL
    )
    figures = interleaved({"auto": side("auto"), "bfloat16": side("bfloat16")}, args.repeats)
    auto, bf16 = median(figures["auto"]), median(figures["bfloat16"])
    hw = hardware()
    resolved = pick_dtype("auto", hw)
    print(
        f"sample stage, dtype auto ({resolved}): {auto:.1f} tokens/s; forced bfloat16: "
        f"{bf16:.1f} tokens/s (auto is {auto / bf16:.2f}x); {hw.name}, native bf16: "
        f"{hw.native_bf16}"
    )
    emit(
        {
            "benchmark": f"dtype_auto ({resolved} vs bfloat16)",
            "unit": "tokens/s",
            "rlaif_tokens_per_s": round(auto, 1),
            "raw_tokens_per_s": round(bf16, 1),
            "raw": "the same stage with dtype: bfloat16",
            "ratio": round(auto / bf16, 3),
            "goal": ">= 1 (>> 1 without native bf16)",
            "auto_resolves_to": resolved,
            "native_bf16": hw.native_bf16,
            "prompts": args.prompts,
            "n": args.n,
            "max_new_tokens": args.max_new_tokens,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
        }
    )


if __name__ == "__main__":
    main()
