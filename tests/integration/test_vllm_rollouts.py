"""PPO with vLLM rollouts on the embedded model (vLLM's CPU build here): after a large update
the engine's greedy answer is the trained policy's, not the SFT model's, so the weights
reached the engine."""

import json
import os
import subprocess
import sys

import pytest
from cli_runner import SUPPORT, VLLM_ENV

pytestmark = pytest.mark.vllm


def test_vllm_rollouts_follow_the_policy_weights(tmp_path, embedded_model):
    probe = SUPPORT / "vllm_rollout_probe.py"
    env = {**os.environ, **VLLM_ENV}
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
