"""Nightly operations: incremental nights over unseen prompts, a cumulative versioned
preference dataset, the one-at-a-time lock, the nightly budget, JSON-lines logs, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cli_runner import SUPPORT, run_cli
from datasets import load_from_disk

from rlaif.judging.store import JudgmentStore
from rlaif.ops.export import export
from rlaif.ops.nightly import Ledger, latest_preferences, nightly_root, run_nightly
from rlaif.run.run_dir import read_manifest, run_cost
from rlaif.run.runner import Pipeline
from rlaif.testing.loopback import LoopbackJudgeServer


def write_prompts(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))


def nightly_config(tmp_path: Path, tiny_model: Path, **extra) -> Path:
    config = {
        "name": "nightly-test",
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "outputs"),
        "prompts": {"source": str(tmp_path / "prompts.jsonl"), "id_column": None, "eval_size": 2},
        "sample": {"backend": "transformers", "n": 2, "max_new_tokens": 6, "dtype": "float32"},
        "judge": {
            "judges": [
                {
                    "name": "short",
                    "backend": "python",
                    "callable": "judges_for_tests:prefer_shorter",
                }
            ]
        },
        "aggregate": {"ties": "keep"},
        "nightly": {"max_prompts": 4},
        **extra,
    }
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    write_prompts(path, [f"Question number {i}: what is {i} plus {i}?" for i in range(10)])
    return path


def test_nights_take_only_unseen_prompts_and_grow_a_versioned_dataset(
    tmp_path, tiny_model, prompts_file, monkeypatch
):
    monkeypatch.syspath_prepend(str(SUPPORT))
    pipe = Pipeline.from_yaml(nightly_config(tmp_path, tiny_model))
    root = nightly_root(pipe)

    first = run_nightly(pipe, "2026-01-01")
    second = run_nightly(pipe, "2026-01-02")
    assert (first.new_prompts, second.new_prompts) == (4, 4)
    assert (first.version, second.version) == (1, 2)
    heldout = set(load_from_disk(str(root / "heldout"))["prompt"])
    night_prompts = [
        set(load_from_disk(str(root / d / "prompts" / "train"))["prompt"])
        for d in ("2026-01-01", "2026-01-02")
    ]
    assert not night_prompts[0] & night_prompts[1]
    assert not (night_prompts[0] | night_prompts[1]) & heldout

    v1 = load_from_disk(str(root / "preferences" / "v0001"))
    v2 = load_from_disk(str(root / "preferences" / "v0002"))
    assert set(v1["night"]) == {"2026-01-01"}
    assert v2.to_list()[: len(v1)] == v1.to_list()  # versions only append
    assert set(v2["night"]) == {"2026-01-01", "2026-01-02"}
    night_ids = [
        set(load_from_disk(str(root / d / "prompts" / "train"))["prompt_id"])
        for d in ("2026-01-01", "2026-01-02")
    ]
    assert set(v2["prompt_id"]) <= night_ids[0] | night_ids[1]
    assert latest_preferences(root) == root / "preferences" / "v0002"
    assert read_manifest(second.night_dir)["nightly"]["cumulative_rows"] == len(v2)

    # 10 prompts - 2 held out - 8 seen: nothing is left, and nothing is run
    third = run_nightly(pipe, "2026-01-03")
    assert third.new_prompts == 0 and third.version == 2
    assert not (root / "2026-01-03").exists()

    # new prompts arrive in the source: the next night takes exactly those
    with prompts_file.open("a") as f:
        for text in ("A brand new question?", "Another new one?", "And a third?"):
            f.write(json.dumps({"prompt": text}) + "\n")
    fourth = run_nightly(pipe, "2026-01-04")
    assert set(load_from_disk(str(fourth.night_dir / "prompts" / "train"))["prompt"]) == {
        "A brand new question?",
        "Another new one?",
        "And a third?",
    }
    assert fourth.version == 3

    # re-running a finished night does nothing: no new version, no judge call, no stage re-run
    before = read_manifest(second.night_dir)["stages"]
    with JudgmentStore(tmp_path / "outputs" / "judgments.sqlite") as store:
        stored = store.stats()
    again = run_nightly(pipe, "2026-01-02")
    assert again.version == 2
    assert read_manifest(second.night_dir)["stages"] == before
    with JudgmentStore(tmp_path / "outputs" / "judgments.sqlite") as store:
        assert store.stats() == stored
    ledger = Ledger(root / "ledger.sqlite")
    assert [n["night"] for n in ledger.nights()] == ["2026-01-01", "2026-01-02", "2026-01-04"]
    ledger.close()

    # one line per night from `rlaif status <nightly dir>`
    shown = run_cli("status", str(root))
    assert shown.returncode == 0, shown.stderr
    lines = [line.split() for line in shown.stdout.splitlines() if line.strip().startswith("2026")]
    assert [(r[0], r[1], r[3]) for r in lines] == [
        ("2026-01-01", "completed", "1"),
        ("2026-01-02", "completed", "2"),
        ("2026-01-04", "completed", "3"),
    ]


def test_nightly_trains_on_the_cumulative_dataset(tmp_path, tiny_model, prompts_file):
    config = nightly_config(
        tmp_path,
        tiny_model,
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


def test_second_nightly_exits_at_once_and_a_dead_holders_lock_is_taken_over(
    tmp_path, tiny_model, prompts_file
):
    config = nightly_config(tmp_path, tiny_model)
    lock = tmp_path / "outputs" / "nightly-test" / "nightly" / ".lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from rlaif.run.locking import RunLock\n"
            "with RunLock(Path(sys.argv[1]), what='x'):\n"
            "    print('held', flush=True); time.sleep(600)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        blocked = run_cli("nightly", config, "--date", "2026-03-01")
        assert blocked.returncode == 5, blocked.stderr
        assert "already running" in blocked.stderr and f"pid {holder.pid}" in blocked.stderr
        assert time.monotonic() - start < 60
        assert not (lock.parent / "2026-03-01").exists()  # it touched nothing
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    taken = run_cli("nightly", config, "--date", "2026-03-01")
    assert taken.returncode == 0, taken.stderr
    assert f"left by a dead process (pid {holder.pid}" in taken.stderr


def test_nightly_budget_stops_new_calls_and_the_same_night_resumes(tmp_path, tiny_model):
    write_prompts(tmp_path / "prompts.jsonl", [f"Tell me about topic {i}." for i in range(8)])
    with LoopbackJudgeServer() as server:
        config = nightly_config(
            tmp_path,
            tiny_model,
            judge={
                "judges": [
                    {
                        "name": "api",
                        "backend": "openai",
                        "model": "judge-model",
                        "base_url": server.openai_url,
                        "api_key_env": None,
                        "max_concurrency": 1,
                        "price": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0},
                    }
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
