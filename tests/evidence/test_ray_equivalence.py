"""Proofs that ``executor: ray`` changes nothing but where work runs (the evidence tier: a minute
or more each). The same samples, judgments, preferences, fingerprints and counts from a local Ray
as from the local executor, and Ctrl-C and ``kill -9`` of a driver on Ray paying only for the
calls in flight."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from cli_runner import run_cli, sets, start, stored, wait_for
from configs_for_tests import RULE, SECRET, api_judge, echoed_key_pipeline, prompt_pipeline
from datasets import load_from_disk
from ray_for_tests import RAY

from rlaif.cli.exit_codes import EXIT_BAD_INPUT
from rlaif.run.run_dir import read_manifest
from rlaif.testing.loopback import LoopbackJudgeServer

pytestmark = pytest.mark.ray

QUESTIONS = [f"Question {i}: what grows in a garden?" for i in range(12)]
STAGES = "sample,pair,judge,aggregate"
JUDGED = ["pair_id", "judge", "order", "p_a", "status", "verdict", "key"]


def ray_processes() -> set[int]:
    """The Ray clusters' own processes on this machine (their agents follow within a minute)."""
    out = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True)
    return {int(pid) for pid in out.stdout.split()}


def test_ray_gives_what_the_local_executor_gives(tmp_path, tiny_model):
    with LoopbackJudgeServer() as server:
        cfg = prompt_pipeline(
            tmp_path,
            tiny_model,
            QUESTIONS,
            judges=[
                {"name": "rule", "backend": "python", "callable": RULE},
                api_judge(server.openai_url),
            ],
            sample={"chunk_size": 4},
        )
        store = tmp_path / "judgments.sqlite"
        local = run_cli(
            "run", cfg, "--run-dir", tmp_path / "local", "--stages", STAGES, cwd=tmp_path
        )
        assert local.returncode == 0, local.stderr[-3000:]
        shutil.move(store, tmp_path / "local.sqlite")  # the Ray run must ask everything itself
        for suffix in ("-wal", "-shm", ".count.json"):
            (tmp_path / f"judgments.sqlite{suffix}").unlink(missing_ok=True)
        asked_locally = sum(server.answers.values())
        server.answers.clear()
        args = ["run", cfg, "--run-dir", tmp_path / "ray", "--stages", STAGES, *sets(RAY)]
        on_ray = run_cli(*args, cwd=tmp_path)
        assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    assert sum(server.answers.values()) == asked_locally and max(server.answers.values()) == 1
    assert stored(store) == stored(tmp_path / "local.sqlite")
    for stage, columns in [
        ("samples", ["prompt_id", "responses", "n_tokens", "finished"]),
        ("pairs", None),
        ("judgments", JUDGED),
        ("preferences", None),
    ]:
        here, there = (load_from_disk(str(tmp_path / d / stage)) for d in ("local", "ray"))
        if columns:
            here, there = here.select_columns(columns), there.select_columns(columns)
        assert here.to_list() == there.to_list(), stage
    manifests = [read_manifest(tmp_path / d) for d in ("local", "ray")]
    for name in STAGES.split(","):
        local_stage, ray_stage = (m["stages"][name] for m in manifests)
        assert local_stage["fingerprint"] == ray_stage["fingerprint"], name
        assert local_stage["counts"] == ray_stage["counts"], name


def test_ctrl_c_and_kill_9_on_ray_pay_only_for_what_was_in_flight(tmp_path, tiny_model):
    before = ray_processes()
    with LoopbackJudgeServer(latency_s=0.2) as server:
        cfg = prompt_pipeline(
            tmp_path,
            tiny_model,
            QUESTIONS + [f"Question {i}: name a tree." for i in range(12, 24)],
            judges=[api_judge(server.openai_url, max_concurrency=4, timeout_s=60.0)],
        )
        args = ["run", cfg, "--run-dir", tmp_path / "run", "--stages"]
        assert run_cli(*args, "sample,pair", cwd=tmp_path).returncode == 0
        args = [*args, "judge", *sets(RAY)]
        store = tmp_path / "judgments.sqlite"
        proc = start(args, tmp_path)
        wait_for(proc, lambda: stored(store) >= 8)
        os.kill(proc.pid, signal.SIGINT)  # batches in flight finish and are stored
        assert proc.wait(timeout=120) == 130, proc.log.read_text()[-3000:]
        assert "interrupted: every judgment that arrived is stored" in proc.log.read_text()
        assert read_manifest(tmp_path / "run")["stages"]["judge"]["status"] == "interrupted"
        kept = stored(store)
        assert max(server.answers.values()) == 1 and kept < 44
        proc = start(args, tmp_path)
        wait_for(proc, lambda: stored(store) >= kept + 8)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        final = run_cli(*args, cwd=tmp_path)
        assert final.returncode == 0, final.stderr[-3000:]
    paid_twice = sum(n - 1 for n in server.answers.values())
    assert server.peak_in_flight <= 4  # max_concurrency, split between the two actors
    assert len(server.answers) == stored(store) == 44
    # in flight at the kill -9: the batch each actor was answering
    assert paid_twice <= 2 * 4, server.answers.most_common(10)
    judge = read_manifest(tmp_path / "run")["stages"]["judge"]
    assert judge["status"] == "completed" and judge["counts"]["ok"] == 44
    assert ray_processes() <= before, "the killed driver's Ray outlived it"


def test_a_fatal_judge_error_in_an_actor_stops_the_run_saying_why_without_the_key(
    tmp_path, tiny_model
):
    with LoopbackJudgeServer(echo_key=True) as server:
        cfg = echoed_key_pipeline(tmp_path, tiny_model, server.openai_url)
        args = ["run", cfg, "--run-dir", tmp_path / "run", "--stages", "sample,pair,judge"]
        on_ray = run_cli(*args, *sets(RAY), cwd=tmp_path, env={"RLAIF_TEST_SECRET": SECRET})
    assert on_ray.returncode == EXIT_BAD_INPUT, on_ray.stderr[-3000:]
    assert "invalid api key Bearer [REDACTED]" in on_ray.stderr
    assert "Traceback" not in on_ray.stderr
    ray_logs = Path(tempfile.gettempdir()) / "ray" / "session_latest" / "logs"
    for path in [*tmp_path.rglob("*"), *ray_logs.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
