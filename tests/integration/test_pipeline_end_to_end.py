"""The whole loop through ``Pipeline`` and the CLI on the tiny model: a full run, its resume,
a partial change, status, and the PPO methods."""

import json

import pytest
from cli_runner import run_cli
from datasets import load_from_disk

from rlaif import Pipeline
from rlaif.judging.store import JudgmentStore
from rlaif.rubrics import load_rubric
from rlaif.run.run_dir import read_manifest
from rlaif.run.stage_table import NAMES as STAGES


def test_full_run_then_resume_then_partial_change(pipeline_yaml):
    result = Pipeline.from_yaml(pipeline_yaml).run()
    run_dir = result.run_dir
    manifest = read_manifest(run_dir)
    assert [manifest["stages"][s]["status"] for s in STAGES] == ["completed"] * 6
    assert manifest["config"]["name"] == "tiny"
    assert len(manifest["config_hash"]) == 64
    assert manifest["rubrics"]["concise@1"] == load_rubric("concise").sha256
    assert set(manifest["versions"]) >= {"python", "torch", "transformers", "trl", "datasets"}
    sample_counts = manifest["stages"]["sample"]["counts"]
    assert (sample_counts["prompts"], sample_counts["responses"]) == (5, 15)
    judge_counts = manifest["stages"]["judge"]["counts"]
    pairs = manifest["stages"]["pair"]["counts"]["pairs"]
    assert judge_counts["judgments"] == pairs * 2 * 2  # two judges, two orders
    assert judge_counts["cached"] == 0
    assert (run_dir / "logs" / "run.log").read_text().count("stage judge: completed") == 1

    prefs = load_from_disk(str(run_dir / "preferences"))
    assert {"prompt", "chosen", "rejected", "p_chosen", "margin"} <= set(prefs.column_names)
    assert prefs[0]["prompt"][0]["role"] == "user"
    assert prefs[0]["chosen"][0]["role"] == "assistant"
    assert (run_dir / "train" / "model" / "model.safetensors").is_file()
    evaluation = json.loads((run_dir / "evaluation" / "summary.json").read_text())
    assert evaluation["n"] + evaluation["unjudged"] == 3
    assert evaluation["kl_to_sft"] > -0.05  # a sampled estimate of a non-negative quantity
    assert "lc_win_rate" in evaluation
    assert result.evaluation == evaluation

    stamps = {s: manifest["stages"][s]["finished_at"] for s in STAGES}
    again = Pipeline.from_yaml(pipeline_yaml).run()
    assert again.run_dir == run_dir
    manifest = read_manifest(run_dir)
    assert {s: manifest["stages"][s]["finished_at"] for s in STAGES} == stamps

    # A downstream change keeps the same judgments: nothing upstream of aggregate re-runs,
    # and a changed judge setting re-uses every cached judgment.
    changed = Pipeline.from_yaml(
        pipeline_yaml, ["aggregate.min_margin=0.05", "judge.max_failures=5"]
    )
    moved = changed.run(stages=["judge", "aggregate"])
    m2 = read_manifest(moved.run_dir)
    assert m2["stages"]["judge"]["counts"]["cached"] == judge_counts["judgments"]
    assert m2["stages"]["aggregate"]["counts"]["preferences"] <= len(prefs)
    assert "train" not in m2["stages"]


def test_cli_run_and_status(pipeline_yaml, tmp_path):
    run_dir = tmp_path / "cli-run"
    done = run_cli(
        "run",
        str(pipeline_yaml),
        "--run-dir",
        str(run_dir),
        "--stages",
        "pair",
        "--set",
        "sample.n=2",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"run directory: {run_dir}" in done.stdout
    status = run_cli("status", str(run_dir), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert any(line.split()[:2] == ["sample", "completed"] for line in lines)
    assert any(line.split()[:3] == ["judge", "not", "run"] for line in lines)
    manifest = json.loads(run_cli("status", str(run_dir), "--json", cwd=tmp_path).stdout)
    assert manifest["config"]["sample"]["n"] == 2


@pytest.mark.parametrize("method", ["rm_ppo", "d_rlaif"])
def test_ppo_methods_through_the_pipeline(pipeline_yaml, tiny_model, tmp_path, method):
    overrides = [
        f"train.method={method}",
        "train.reward_model.max_steps=2",
        "train.reward_model.eval_fraction=0.25",
        "train.ppo.steps=2",
        "train.ppo.rollout_batch_size=4",
        "train.ppo.minibatch_size=2",
        "train.ppo.max_new_tokens=6",
        "evaluate.max_new_tokens=4",
    ]
    if method == "d_rlaif":
        overrides.append(
            f"judge.judges=[{{name: uf, model: {tiny_model}, "
            "rubric: ultrafeedback_helpfulness, dtype: float32}]"
        )
    pipe = Pipeline.from_yaml(pipeline_yaml, overrides)
    pipe.run(stages=["aggregate"], run_dir=tmp_path / method)
    with JudgmentStore(pipe.config.judgment_store_path()) as store:
        before_training = len(store)
    result = pipe.run(stages=["train"], run_dir=tmp_path / method)
    with JudgmentStore(pipe.config.judgment_store_path()) as store:
        # d-RLAIF's judge scores the rollouts through the store, as the judge stage does
        assert (len(store) > before_training) == (method == "d_rlaif")
    result = pipe.run(run_dir=tmp_path / method)
    counts = result.manifest["stages"]["train"]["counts"]
    assert counts["method"] == method and counts["first_kl"] == pytest.approx(0.0, abs=1e-5)
    assert "last_reward" in counts
    if method == "rm_ppo":
        assert counts["reward_model"]["heldout_pairs"] >= 1
    assert (result.run_dir / "train" / "model" / "model.safetensors").is_file()
    assert result.manifest["stages"]["evaluate"]["status"] == "completed"
