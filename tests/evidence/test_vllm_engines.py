"""The vLLM engines in-process, each a multi-minute proof on this CPU (every engine starts in
about a minute): offline sampling and a vLLM judge in one run, Ray Data's vLLM stage against the
test run's vLLM server, and PPO's vLLM rollouts following the policy's weights. Skipped where
vLLM (or Ray) is not installed."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from cli_runner import SUPPORT, VLLM_ENV, run_cli, sets
from configs_for_tests import prompt_pipeline
from datasets import load_from_disk

pytestmark = pytest.mark.vllm


def test_offline_vllm_sampling_and_judging(tmp_path, embedded_model):
    """sample.backend=vllm and a vllm judge, through the CLI in a fresh process (vLLM's
    engine spawns workers that need a real main module)."""
    config = {
        "name": "vllm-offline",
        "output_dir": str(tmp_path / "out"),
        "prompts": {"limit": 4, "eval_size": 1},
        "sample": {"backend": "vllm", "n": 2, "max_new_tokens": 12},
        "judge": {"judges": [{"name": "v", "backend": "vllm", "max_model_len": 1024}]},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["run", path, "--stages", "judge", "--run-dir", tmp_path / "run"]
    done = run_cli(*args, cwd=tmp_path, env=VLLM_ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    samples = load_from_disk(str(tmp_path / "run" / "samples"))
    assert [len(r) for r in samples["responses"]] == [2, 2, 2]
    judgments = load_from_disk(str(tmp_path / "run" / "judgments"))
    assert len(judgments) > 0 and set(judgments["status"]) == {"ok"}
    assert min(judgments["label_mass"]) > 0.05


@pytest.mark.ray
def test_vllm_sampling_on_ray_goes_through_ray_data_s_vllm_stage(
    tmp_path, embedded_model, vllm_server
):
    """``sample.backend: vllm`` on Ray: Ray Data's vLLM stage, a prompt sent as ``n`` rows and
    gathered back into its chunk, gives what the same vLLM engine answers here (greedy, so
    equal): the test run's vLLM server, float32 like the stage."""
    questions = ["Name a fruit.", "What is 2 + 2?", "Say hello.", "Name a colour.", "Hi?"]
    cfg = prompt_pipeline(tmp_path, embedded_model, questions, eval_size=1)
    greedy = ["sample.temperature=0", "sample.n=2", "sample.max_new_tokens=8",
              "sample.chunk_size=2", "sample.dtype=float32"]  # fmt: skip
    served = ["sample.backend=openai", f"sample.server.base_url={vllm_server}/v1",
              "sample.server.served_model=smol", "sample.server.api_key_env=null"]  # fmt: skip
    on_ray = ["sample.backend=vllm", "executor=ray", "ray.num_cpus=2", "ray.sample_workers=1",
              "ray.cpus_per_worker=0.5"]  # fmt: skip
    samples = {}
    for where, extra in (("here", served), ("ray", on_ray)):
        args = ["run", cfg, "--run-dir", tmp_path / where, "--stages", "sample"]
        done = run_cli(*args, *sets(greedy + extra), cwd=tmp_path, env=VLLM_ENV, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        rows = load_from_disk(str(tmp_path / where / "samples"))
        samples[where] = rows.select_columns(["prompt_id", "responses", "finished"]).to_list()
        if where == "ray":
            tokens = [t for ts in rows["n_tokens"] for t in ts]
    log = (tmp_path / "ray" / "logs" / "run.log").read_text()
    assert "Ray Data's vLLM stage: 4 rows (one per answer)" in log  # greedy: 1 per prompt
    assert samples["ray"] == samples["here"]
    assert [len(set(r["responses"])) for r in samples["ray"]] == [1, 1, 1, 1]  # greedy copies
    assert all(0 < t <= 8 for t in tokens) and any(t == 8 for t in tokens)


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
