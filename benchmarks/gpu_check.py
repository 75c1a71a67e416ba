"""The GPU figures in one command (``make gpu-check``), for the day a GPU machine is lent.

On a CUDA machine, within ``--budget-s`` (8 minutes by default), each benchmark in its own
process with a share of what time is left:

- the sample stage with vLLM against bare ``vllm.LLM.chat``, the same prompts (goal >= 0.95x);
- DPO steps against bare ``trl.DPOTrainer`` (goal <= 1.05x the time a step);
- two GRPO steps with vLLM rollouts (TRL's colocated vLLM, through ``train.grpo.trl``), from
  ``rlaif run rule_grpo``: the train stage's seconds;
- the local transformers judge against a bare forward reading the two label logits.

It writes one JSON (``--out``, default ``outputs/gpu_check.json``) with the device named and
each benchmark's last line, or why it has none (a failure, the budget). Without a CUDA device
it says so, writes nothing and exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def steps(run_dir: Path) -> list[tuple[str, list[str], float]]:
    """(name, command, the most seconds it may take)."""
    python = sys.executable
    grpo = [
        python, "-m", "rlaif.cli", "run", "rule_grpo", "--run-dir", str(run_dir),
        "--stages", "sample,pair,judge,aggregate,train",
        "--set", "prompts.limit=48", "--set", "train.grpo.max_steps=2",
        "--set", "train.grpo.trl.use_vllm=true", "--set", "train.grpo.trl.vllm_mode=colocate",
    ]  # fmt: skip
    return [
        ("sample_vllm", [python, str(HERE / "vllm_sample_vs_bare.py"), "--prompts", "256",
                         "--max-new-tokens", "128"], 180),
        ("dpo", [python, str(HERE / "dpo_vs_trl.py"), "--steps", "6", "--batch-size", "8"], 120),
        ("grpo_vllm", grpo, 150),
        ("local_judge", [python, str(HERE / "local_judge_vs_forward.py"), "--pairs", "128",
                         "--batch-size", "32"], 60),
    ]  # fmt: skip


def run_step(command: list[str], timeout: float) -> dict:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"error": f"over its {timeout:.0f} s", "seconds": round(timeout, 1)}
    seconds = round(time.perf_counter() - start, 1)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:], "seconds": seconds}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return {"result": json.loads(lines[-1]) if lines else None, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "outputs" / "gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=480.0)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu_check", "skipped": "no CUDA device here"}))
        return
    deadline = time.monotonic() + args.budget_s
    figures: dict = {
        "benchmark": "gpu_check",
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, command, most in steps(Path(tmp) / "grpo"):
            left = deadline - time.monotonic()
            if left < 10:
                figures[name] = {"error": "not run: the budget was spent"}
                continue
            figures[name] = run_step(command, min(most, left))
            if name == "grpo_vllm" and "error" not in figures[name]:
                manifest = json.loads((Path(tmp) / "grpo" / "manifest.json").read_text())
                figures[name]["train_seconds"] = manifest["stages"]["train"].get("seconds")
            print(f"{name}: {json.dumps(figures[name])}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
