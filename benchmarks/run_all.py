"""``make bench``: every stage-against-raw-engine benchmark, then one table.

Each benchmark runs in its own process (one at a time: on a small machine two would time
each other) and prints one JSON object last; this collects them and prints a Markdown table
with the machine it ran on, ready for the README. ``--only NAME`` runs some of them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from rlaif.models.devices import cpu_flags, hardware

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "sample_vs_generate",
    "dtype_auto",
    "dpo_vs_trl",
    "local_judge_vs_forward",
    "judge_throughput",
    "judge_vs_distilabel",
    "reward_server",
]
"""Each with its defaults (a few minutes at most here); run one alone with flags to go bigger."""
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "bf16")


def machine() -> str:
    hw = hardware()
    flags = [f for f in _FLAGS if f in cpu_flags()]
    return (
        f"{hw.device}: {hw.name}; torch CPU capability {hw.cpu_capability}; flags "
        f"{', '.join(flags) or 'none of ' + ', '.join(_FLAGS)}; native bf16: {hw.native_bf16}; "
        f"{torch.get_num_threads()} threads"
    )


def run(name: str) -> dict:
    command = [sys.executable, str(HERE / f"{name}.py")]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    start = time.monotonic()
    done = subprocess.run(command, cwd=HERE, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[-3:-1]), flush=True)
    if done.returncode != 0 or not lines:
        print(done.stderr[-2000:], file=sys.stderr)
        return {"benchmark": name, "error": f"exit {done.returncode}"}
    figures = json.loads(lines[-1])
    figures["wall_s"] = round(time.monotonic() - start, 1)
    return figures


def table(results: list[dict]) -> str:
    rows = [
        "| benchmark | unit | rlaif | raw | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['benchmark']} | failed: {r['error']} | | | | |")
            continue
        rlaif = next(v for k, v in r.items() if k.startswith("rlaif_"))
        raw = next(v for k, v in r.items() if k.startswith("raw_"))
        rows.append(
            f"| {r['benchmark']} | {r['unit']} | {rlaif} | {raw} | {r['ratio']} | {r['goal']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, default=BENCHMARKS)
    parser.add_argument("--out", type=Path, help="also write every benchmark's JSON here")
    args = parser.parse_args()
    results = [run(name) for name in args.only]
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "results": results}, indent=2))
    print(f"\nmachine: {machine()}\n")
    print(table(results))
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
