"""``executor: ray`` against ``executor: local``: the same samples, judgments and preferences
from a local Ray (``ray.num_cpus: 2``, no cluster), the judgment store still the one source of
truth (nothing paid twice, a killed driver resumed), and an actor's fatal error said as the
local executor says it."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from cli_runner import SUPPORT, run_cli, sets, start, stored, wait_for
from configs_for_tests import RULE, SECRET, api_judge, echoed_key_pipeline, prompt_pipeline
from datasets import Dataset, load_from_disk

from rlaif.cli.exit_codes import EXIT_BAD_INPUT
from rlaif.config import EvaluateConfig, JudgeConfig, Price, PythonJudgeConfig, SampleConfig
from rlaif.executors.config import RayConfig
from rlaif.judging.store import JudgmentStore
from rlaif.run.run_dir import read_manifest
from rlaif.stages.evaluate import evaluate
from rlaif.stages.judge import judge
from rlaif.stages.sample import sample
from rlaif.testing.loopback import LoopbackJudgeServer

pytestmark = pytest.mark.ray

QUESTIONS = [f"Question {i}: what grows in a garden?" for i in range(12)]
RAY = [
    "executor=ray",
    "ray.num_cpus=2",
    "ray.sample_workers=2",
    "ray.judge_workers=2",
    "ray.cpus_per_worker=0.5",
    "ray.batch_size=4",
]
STAGES = "sample,pair,judge,aggregate"
JUDGED = ["pair_id", "judge", "order", "p_a", "status", "verdict", "key"]


def yes_no_pairs(n: int) -> Dataset:
    """``n`` pairs for the API judge tests, one prompt each."""
    return Dataset.from_list(
        [
            {"pair_id": f"p{i}", "prompt_id": f"q{i}", "prompt": f"Question {i}?",
             "index_a": 0, "index_b": 1, "response_a": "Yes.", "response_b": "No, never."}
            for i in range(n)
        ]
    )  # fmt: skip


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
        for suffix in ("-wal", "-shm"):
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


@pytest.fixture(scope="module")
def ray_here():
    """A Ray started in this process for the tests that call stages directly (the CLI tests
    start their own, as a user's run does)."""
    import ray

    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(SUPPORT)  # the actors' judge module
    yield RayConfig(num_cpus=2, judge_workers=2, cpus_per_worker=0.5, batch_size=2)
    ray.shutdown()
    if path is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = path


def test_evaluation_on_ray_equals_evaluation_here(tmp_path, tiny_model, embedded_model, ray_here):
    """The SFT model's answers sampled and the comparisons judged by Ray actors, against the
    same evaluation here."""
    held_out = Dataset.from_dict(
        {"prompt_id": ["a", "b", "c"], "prompt": ["Hi?", "Why is the sky blue?", "Name a fruit."]}
    )
    args = dict(
        cfg=EvaluateConfig(max_new_tokens=8),
        policy=str(tiny_model),
        reference=str(embedded_model),
        sample_cfg=SampleConfig(backend="transformers", dtype="float32"),
        judge_cfg=JudgeConfig(judges=[PythonJudgeConfig(callable=RULE)]),
    )
    with JudgmentStore(tmp_path / "here.sqlite") as here:
        local = evaluate(held_out, store=here, **args)
        judged_here = len(here)
    with JudgmentStore(tmp_path / "ray.sqlite") as there:
        remote = evaluate(held_out, store=there, ray=ray_here, **args)
        assert len(there) == judged_here > 0
    assert remote.to_list() == local.to_list()


def test_sampling_resumes_from_the_shards_on_either_executor(tmp_path, tiny_model, ray_here):
    """Chunks sampled here and saved as shards; one lost; the re-run on Ray samples only it,
    and the whole equals the run here (chunk ``i`` is seeded with ``seed + i`` everywhere)."""
    prompts = Dataset.from_dict({"prompt": [f"Question {i}: name a tree." for i in range(6)]})
    cfg = SampleConfig(backend="transformers", dtype="float32", n=2, max_new_tokens=6, chunk_size=2)
    parts = tmp_path / "parts"
    here = sample(prompts, cfg, model=str(tiny_model), parts_dir=parts).to_list()
    assert sorted(p.name for p in parts.iterdir()) == [f"chunk-0000{i}.parquet" for i in range(3)]
    (parts / "chunk-00001.parquet").unlink()
    kept = {p: p.stat().st_mtime_ns for p in parts.iterdir()}
    resumed = sample(prompts, cfg, model=str(tiny_model), parts_dir=parts, ray=ray_here)
    assert resumed.to_list() == here
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # read back, not sampled again
    assert (parts / "chunk-00001.parquet").exists()


def test_the_budget_stops_the_actors(tmp_path, ray_here):
    """Past judge.max_cost_usd actors start no batch; those in flight are paid and stored."""
    price = Price(input_per_mtok=1000.0, output_per_mtok=0.0)  # about $0.13 a call
    with LoopbackJudgeServer(latency_s=0.1) as server:
        spec = api_judge(server.openai_url, max_concurrency=2, price=price.model_dump())
        cfg = JudgeConfig(judges=[spec], max_cost_usd=0.3)
        data = yes_no_pairs(10)
        with JudgmentStore(tmp_path / "j.sqlite") as store:
            out = judge(data, cfg, store=store, ray=ray_here)
            kept = len(store)
        paid = sum(server.answers.values())
    assert server.peak_in_flight <= 2
    statuses = out["status"]
    assert paid == kept == statuses.count("ok")
    assert statuses.count("skipped") == 20 - kept > 0
    # over the cap by at most what the actors had in flight when it was reached
    assert kept <= math.ceil(0.3 / 0.13) + ray_here.judge_workers * ray_here.batch_size


def test_a_killed_actor_s_batch_is_retried_and_only_it_is_paid_twice(tmp_path, ray_here):
    """Ray restarts a SIGKILLed judge actor and retries its batch: every judgment arrives,
    and what is paid twice is at most that batch."""
    with LoopbackJudgeServer(latency_s=0.2) as server:
        spec = api_judge(server.openai_url, max_concurrency=4, timeout_s=60.0)
        data = yes_no_pairs(16)
        killed: list[int] = []

        def kill_an_actor() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                actors = subprocess.run(
                    ["pgrep", "-f", r"MapBatches\(_JudgeWorker\)"], capture_output=True, text=True
                ).stdout.split()
                if actors and sum(server.answers.values()) >= 6:
                    os.kill(int(actors[0]), signal.SIGKILL)
                    killed.append(int(actors[0]))
                time.sleep(0.05)

        killer = threading.Thread(target=kill_an_actor)
        killer.start()
        with JudgmentStore(tmp_path / "j.sqlite") as store:
            out = judge(data, JudgeConfig(judges=[spec]), store=store, ray=ray_here)
            kept = len(store)
        killer.join()
    assert killed, "no judge actor was found to kill"
    assert out["status"].count("ok") == kept == len(server.answers) == 32
    paid_twice = sum(n - 1 for n in server.answers.values())
    assert paid_twice <= ray_here.batch_size, server.answers.most_common(6)
