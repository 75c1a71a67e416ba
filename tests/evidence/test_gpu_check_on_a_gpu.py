"""``make gpu-check`` on a CUDA machine: every figure written, with the device named (about 8
minutes; skipped without a GPU)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.gpu
def test_on_a_gpu_every_figure_names_the_device(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["device"] == torch.cuda.get_device_name(0)
    for name in ("sample_vllm", "dpo", "grpo_vllm", "local_judge"):
        assert "error" not in figures[name], figures[name]
