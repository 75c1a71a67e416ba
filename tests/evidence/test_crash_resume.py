"""Real runs interrupted and resumed. ``kill -9`` in the middle of a stage: the same command
then finishes it, and its outputs equal those of a run that was never interrupted (same rows,
no duplicates, no judgment asked again except the few in flight at the kill). Ctrl-C under a
python judge keeps what it finished; a damaged manifest is moved aside."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cli_runner
import pytest
import yaml
from cli_runner import SUPPORT, run_cli, stored, wait_for
from configs_for_tests import api_judge, pipeline, prompt_pipeline, write
from datasets import load_from_disk

from rlaif.run.run_dir import read_manifest
from rlaif.testing.loopback import LoopbackJudgeServer

STAGES = "sample,pair,judge,aggregate"
CONCURRENCY = 2


def config(tmp_path: Path, tiny_model: Path, server: LoopbackJudgeServer, name: str) -> Path:
    data = {
        "name": name,
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "outputs"),
        "prompts": {"limit": 10, "eval_size": 2},
        "sample": {
            "backend": "transformers",
            "n": 3,
            "max_new_tokens": 24,
            "dtype": "float32",
            "chunk_size": 1,
        },
        "judge": {
            "judges": [
                {
                    "name": "api",
                    "backend": "openai",
                    "model": "judge-model",
                    "base_url": server.openai_url,
                    # the two runs' servers answer alike on different ports: one deployment
                    "server_id": "loopback-judge",
                    "api_key_env": None,
                    "max_concurrency": CONCURRENCY,
                }
            ],
            "cache": str(tmp_path / f"{name}.sqlite"),
        },
        "aggregate": {"ties": "keep"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start(config_path: Path, run_dir: Path, stages: str = STAGES) -> subprocess.Popen:
    """``rlaif run`` in a child process; its output goes to a file (a pipe nobody reads
    would fill up and stall it)."""
    log = run_dir.with_name(run_dir.name + ".log")
    with log.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlaif.cli", "run", str(config_path), "--run-dir",
             str(run_dir), "--stages", stages],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(SUPPORT)},
        )  # fmt: skip
    proc.log = log
    return proc


def output(proc: subprocess.Popen) -> str:
    return proc.log.read_text()


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before the kill point: {output(proc)}"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def checkpoint_steps(run_dir: Path) -> int:
    """The step of the newest complete trainer checkpoint under ``run_dir/checkpoints``."""
    done = run_dir.glob("checkpoints/**/checkpoint-*/trainer_state.json")
    return max((int(p.parent.name.split("-")[1]) for p in done), default=0)


def rows(run_dir: Path, stage: str, drop: tuple[str, ...] = ()) -> list[dict]:
    ds = load_from_disk(str(run_dir / stage))
    return ds.remove_columns([c for c in drop if c in ds.column_names]).to_list()


def test_kill_9_mid_sample_and_mid_judge_then_resume_equals_an_uninterrupted_run(
    tmp_path, tiny_model
):
    with LoopbackJudgeServer(latency_s=0.1) as server:
        reference_dir = tmp_path / "uninterrupted"
        ref = start(config(tmp_path, tiny_model, server, "ref"), reference_dir)
        assert ref.wait() == 0, output(ref)
        expected_calls = len(server.attempts)

    with LoopbackJudgeServer(latency_s=0.1) as server:
        cfg = config(tmp_path, tiny_model, server, "crash")
        run_dir, store = tmp_path / "crashed", tmp_path / "crash.sqlite"

        # 1. in the middle of sampling: some chunks saved, the stage not finished
        proc = start(cfg, run_dir)
        chunks = run_dir / "samples.parts"
        kill_when(proc, lambda: len(list(chunks.glob("*/chunk-*.parquet"))) >= 3)
        assert not (run_dir / "samples").exists()
        saved = {p.name for p in chunks.glob("*/chunk-*.parquet")}

        # 2. in the middle of judging: some judgments stored, the stage not finished
        proc = start(cfg, run_dir)
        kill_when(proc, lambda: stored(store) >= 12)
        assert (run_dir / "samples").exists() and not (run_dir / "judgments").exists()
        assert saved  # the resumed sample stage started from these chunks
        before_resume = dict(server.attempts)
        shown = run_cli("status", run_dir)
        assert shown.returncode == 0, shown.stderr
        judge_line = next(line for line in shown.stdout.splitlines() if "judge " in line)
        assert "interrupted" in judge_line  # its process is gone; the next run resumes it
        assert re.search(r"judging \(api\): \d+/\d+ judgment", shown.stdout), shown.stdout

        # 3. the same command finishes the run
        proc = start(cfg, run_dir)
        assert proc.wait() == 0, output(proc)

    for stage in ("samples", "pairs", "preferences"):
        assert rows(run_dir, stage) == rows(reference_dir, stage), stage
    got = rows(run_dir, "judgments", drop=("cached", "key"))
    assert got == rows(reference_dir, "judgments", drop=("cached", "key"))
    assert len({(r["pair_id"], r["order"]) for r in got}) == len(got)  # no duplicate rows
    # every judgment was stored once; only the calls in flight at the kill were asked again
    assert stored(store) == expected_calls == len(server.attempts)
    asked_twice = [k for k, n in server.attempts.items() if n > 1]
    assert len(asked_twice) <= CONCURRENCY
    assert all(before_resume.get(k, 0) == 1 for k in asked_twice)


def test_kill_9_mid_training_resumes_from_the_last_checkpoint(tmp_path, tiny_model):
    """DPO killed after a few checkpoints finishes from the newest one with the same loss
    curve and the same weights as a run that was never interrupted."""
    import torch
    from safetensors.torch import load_file

    data = {
        "name": "train-crash",
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "outputs"),
        "prompts": {"limit": 12, "eval_size": 2},
        "sample": {"backend": "transformers", "n": 3, "max_new_tokens": 12, "dtype": "float32"},
        "judge": {
            "judges": [
                {"name": "rule", "backend": "python", "callable": "judges_for_tests:prefer_shorter"}
            ]
        },
        "aggregate": {"ties": "keep"},
        "train": {
            "max_steps": 14,
            "save_steps": 2,
            "per_device_train_batch_size": 2,
            "max_length": 64,
            "learning_rate": 1e-3,
        },
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    reference = tmp_path / "uninterrupted"
    proc = start(path, reference, "train")
    assert proc.wait() == 0, output(proc)

    crashed = tmp_path / "crashed"
    proc = start(path, crashed, "train")
    kill_when(proc, lambda: checkpoint_steps(crashed) >= 6)
    assert not (crashed / "train").exists()
    proc = start(path, crashed, "train")
    assert proc.wait() == 0, output(proc)
    assert "dpo: resuming from" in output(proc)

    losses = [rows(d, "train/log") for d in (reference, crashed)]
    assert [r["step"] for r in losses[1]] == [r["step"] for r in losses[0]]
    assert [r["loss"] for r in losses[1]] == pytest.approx([r["loss"] for r in losses[0]], abs=1e-4)
    want, got = (
        load_file(d / "train" / "model" / "model.safetensors") for d in (reference, crashed)
    )
    assert want.keys() == got.keys()
    assert all(torch.allclose(want[k], got[k], atol=1e-5) for k in want)


def test_sigkill_mid_judging_reasks_only_what_was_in_flight(tmp_path, tiny_model):
    concurrency, kills = 3, 3
    with LoopbackJudgeServer(latency_s=0.15) as server:
        cfg = prompt_pipeline(
            tmp_path,
            tiny_model,
            [f"Question {i}: name a colour." for i in range(24)],
            # a generous timeout: a busy machine must not turn a slow answer into a paid retry
            judges=[api_judge(server.openai_url, max_concurrency=concurrency, timeout_s=60.0)],
        )
        args = ["run", cfg, "--run-dir", tmp_path / "run", "--stages", "sample,pair,judge"]
        store = tmp_path / "judgments.sqlite"
        for k in range(kills):
            proc = cli_runner.start(args, tmp_path)
            wait_for(proc, lambda k=k: stored(store) >= 6 * (k + 1))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        final = run_cli(*args, cwd=tmp_path)
        assert final.returncode == 0, (final.stdout + final.stderr)[-3000:]
        paid_twice = sum(n - 1 for n in server.answers.values())
        assert len(server.answers) == stored(store)
        assert paid_twice <= kills * concurrency, server.answers.most_common(kills * concurrency)


def test_ctrl_c_keeps_what_a_python_judge_finished(tmp_path, tiny_model):
    calls = tmp_path / "calls.log"
    cfg = write(
        tmp_path,
        pipeline(
            tmp_path,
            tiny_model,
            judges=[{"backend": "python", "callable": "judges_for_tests:slow_logged"}],
            prompts={"limit": 24},
        ),
    )
    env = {"RLAIF_TEST_CALL_LOG": str(calls)}
    args = ["run", cfg, "--run-dir", tmp_path / "run", "--stages", "sample,pair,judge"]
    proc = cli_runner.start(args, tmp_path, env)
    wait_for(proc, lambda: calls.exists() and len(calls.read_text().splitlines()) >= 5)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    done = len(calls.read_text().splitlines())
    assert stored(tmp_path / "judgments.sqlite") == done - 1  # all but check()'s example call
    assert run_cli(*args, cwd=tmp_path, env=env).returncode == 0
    lines = calls.read_text().splitlines()
    judged = [line for line in lines if "What is 2 + 2?" not in line]
    assert len(judged) == len(set(judged))  # no comparison was judged twice


def test_a_damaged_manifest_is_moved_aside_and_the_run_goes_on(tmp_path, tiny_model):
    cfg = write(tmp_path, pipeline(tmp_path, tiny_model))
    args = ["run", cfg, "--run-dir", tmp_path / "run", "--stages", "sample,pair"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    manifest = tmp_path / "run" / "manifest.json"
    manifest.write_text(manifest.read_text()[:50])
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "damaged manifest" in again.stderr and "moved to" in again.stderr
    assert list((tmp_path / "run").glob("manifest.json.damaged-*"))
    assert read_manifest(tmp_path / "run")["stages"]["pair"]["status"] == "completed"
