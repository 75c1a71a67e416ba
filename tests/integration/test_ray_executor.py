"""``executor: ray`` against ``executor: local`` on a local Ray (``ray.num_cpus: 2``, no
cluster): evaluation and resumed sampling equal to the local executor's, the budget and a
killed actor with the judgment store still the one source of truth, and an actor's fatal error
said as the local executor says it. The whole-run equivalence and the killed driver are in
``tests/evidence/test_ray_equivalence.py``."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time

import pytest
from cli_runner import SUPPORT
from configs_for_tests import RULE, api_judge
from datasets import Dataset

from rlaif.config import EvaluateConfig, JudgeConfig, Price, PythonJudgeConfig, SampleConfig
from rlaif.executors.config import RayConfig
from rlaif.judging.store import JudgmentStore
from rlaif.stages.evaluate import evaluate
from rlaif.stages.judge import judge
from rlaif.stages.sample import sample
from rlaif.testing.loopback import LoopbackJudgeServer

pytestmark = pytest.mark.ray


def yes_no_pairs(n: int) -> Dataset:
    """``n`` pairs for the API judge tests, one prompt each."""
    return Dataset.from_list(
        [
            {"pair_id": f"p{i}", "prompt_id": f"q{i}", "prompt": f"Question {i}?",
             "index_a": 0, "index_b": 1, "response_a": "Yes.", "response_b": "No, never."}
            for i in range(n)
        ]
    )  # fmt: skip


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


def test_listwise_rankings_from_ray_actors_equal_those_made_here(tmp_path, ray_here):
    """A listwise judge on Ray: the same calls (one per prompt and order shown), the same
    rankings and the same pair rows as here."""
    answers = ["a long answer " * 4, "short", "a middling one", "tiny"]
    rows = [
        {"pair_id": f"p{p}:{i}-{j}", "prompt_id": f"p{p}", "prompt": f"Q{p}?", "index_a": i,
         "index_b": j, "response_a": answers[i], "response_b": answers[j]}
        for p in range(3)
        for i in range(4)
        for j in range(i + 1, 4)
    ]  # fmt: skip
    spec = PythonJudgeConfig(callable="judges_for_tests:rank_shorter", mode="listwise")
    cfg = JudgeConfig(judges=[spec])
    columns = ["pair_id", "order", "p_a", "p_first", "ranking", "key", "status"]
    with JudgmentStore(tmp_path / "here.sqlite") as here:
        local = judge(Dataset.from_list(rows), cfg, store=here).select_columns(columns)
    with JudgmentStore(tmp_path / "ray.sqlite") as there:
        remote = judge(Dataset.from_list(rows), cfg, store=there, ray=ray_here)
        assert len(there) == 6  # 3 prompts x 2 orders shown
    assert remote.select_columns(columns).to_list() == local.to_list()


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
