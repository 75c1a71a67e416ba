"""Nights that train on the cumulative dataset and nights that reach their budget, through the
CLI (the evidence tier: half a minute or more each)."""

import json

import pytest
from cli_runner import run_cli
from configs_for_tests import api_judge, nightly_config, write_prompts
from datasets import load_from_disk

from rlaif.judging.store import JudgmentStore
from rlaif.ops.export import export
from rlaif.ops.nightly import latest_preferences
from rlaif.run.run_dir import read_manifest, run_cost
from rlaif.testing.loopback import LoopbackJudgeServer


def test_nightly_trains_on_the_cumulative_dataset(tmp_path, tiny_model):
    # with reference answers: the export labels each prompt with one (the tiny model's own
    # answers are empty, which a judged reward cannot compare with)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"What is {i} plus {i}?", "answer": str(2 * i)}) + "\n"
                for i in range(10))
    )  # fmt: skip
    source = {"source": str(prompts), "id_column": None, "eval_size": 2}
    config = nightly_config(
        tmp_path,
        tiny_model,
        prompts=source | {"reference_column": "answer"},
        train={"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64},
        evaluate={"max_new_tokens": 6, "bootstrap": 100},
    )
    out = run_cli("nightly", config, "--date", "2026-02-01", "--set", "nightly.train=true")
    assert out.returncode == 0, out.stderr
    assert "cumulative preferences: version 1" in out.stdout
    assert "evaluation: policy vs SFT win rate" in out.stdout
    night = tmp_path / "outputs" / "nightly-test" / "nightly" / "2026-02-01"
    manifest = read_manifest(night)
    assert manifest["stages"]["train"]["status"] == "completed"
    assert manifest["evaluation"]["n"] >= 1
    assert (night / "train" / "model" / "config.json").exists()

    # JSON-lines log: one object per line, stage ends with their counts
    events = [json.loads(line) for line in (night / "logs" / "run.jsonl").read_text().splitlines()]
    finished = {e["stage"]: e for e in events if e.get("event") == "stage_finished"}
    assert set(finished) == {"sample", "pair", "judge", "aggregate", "train", "evaluate"}
    assert finished["judge"]["counts"]["judgments"] > 0
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in events)
    # the nightly folder's log gathers every night, publication included
    nightly_log = (night.parent / "logs" / "run.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("event") == "published" for line in nightly_log)

    # nightly.policy: latest: the next night samples from and trains from this night's policy
    latest = ["--set", "nightly.train=true", "--set", "nightly.policy=latest"]
    out = run_cli("nightly", config, "--date", "2026-02-02", *latest)
    assert out.returncode == 0, out.stderr
    second = read_manifest(night.parent / "2026-02-02")
    assert second["start_policy"]["path"] == str(night / "train" / "model")
    assert second["start_policy"]["identity"] == manifest["stages"]["train"]["output_hash"]
    assert second["evaluation"]["vs_previous"]["previous"] == str(night)
    assert "start_policy" not in manifest
    exported = export(night.parent, "openrlhf", tmp_path / "export")[0]
    cumulative = load_from_disk(str(latest_preferences(night.parent)))
    assert len(exported.read_text().splitlines()) == len(cumulative)


def test_nightly_budget_stops_new_calls_and_the_same_night_resumes(tmp_path, tiny_model):
    write_prompts(tmp_path / "prompts.jsonl", [f"Tell me about topic {i}." for i in range(8)])
    with LoopbackJudgeServer() as server:
        config = nightly_config(
            tmp_path,
            tiny_model,
            judge={
                "judges": [
                    api_judge(
                        server.openai_url,
                        max_concurrency=1,
                        price={"input_per_mtok": 1000.0, "output_per_mtok": 1000.0},
                    )
                ],
            },
            nightly={"max_prompts": 6, "max_cost_usd": 1.0},
        )
        first = run_cli("nightly", config, "--date", "2026-04-01")
        assert first.returncode == 3, first.stderr
        night = tmp_path / "outputs" / "nightly-test" / "nightly" / "2026-04-01"
        judge_counts = read_manifest(night)["stages"]["judge"]["counts"]
        assert judge_counts["skipped"] > 0 and judge_counts["cost_usd"] >= 1.0
        # a call costs ~$0.3-0.6 here; at most one call in flight can pass the cap
        assert judge_counts["cost_usd"] < 1.0 + 0.7
        asked = server.requests
        # the night's budget is spent: re-running it makes no new call, and the night's bill
        # still shows what the first attempt paid
        again = run_cli("nightly", config, "--date", "2026-04-01")
        assert again.returncode == 3 and server.requests == asked
        assert run_cost(read_manifest(night)) == pytest.approx(judge_counts["cost_usd"])
        # a bigger budget finishes the same night, paying only for what is left
        done = run_cli(
            "nightly", config, "--date", "2026-04-01", "--set", "nightly.max_cost_usd=100"
        )
        assert done.returncode == 0, done.stderr
        total = sum(server.attempts.values())
        assert total == len(server.attempts)  # no request was ever sent twice
    with JudgmentStore(tmp_path / "outputs" / "judgments.sqlite") as store:
        paid = sum(r["cost_usd"] or 0.0 for r in store)
    assert run_cost(read_manifest(night)) == pytest.approx(paid)  # every attempt on the bill
