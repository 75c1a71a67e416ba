"""``make gpu-check`` on a machine without a GPU says so, writes nothing and exits 0 (on a GPU
machine, ``tests/evidence/test_gpu_check.py`` runs it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: see the gpu test")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "benchmark": "gpu_check",
        "skipped": "no CUDA device here",
    }
    assert not out.exists()
