"""PPO with vLLM rollouts on the embedded model (vLLM's CPU build here): after a large update
the engine's greedy answer is the trained policy's, not the SFT model's, so the weights
reached the engine."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed"),
]


def test_vllm_rollouts_follow_the_policy_weights(tmp_path, embedded_model):
    probe = Path(__file__).with_name("vllm_rollout_probe.py")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_LOGGING_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, str(probe), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == [1, 2]
    assert result["policy"] != result["sft"]  # the update changed the greedy answer
    assert result["vllm"] == result["policy"]  # and the engine has the updated weights
