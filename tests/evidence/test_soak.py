"""The nightly promise as a soak: a thousand judgments against a server that fails one
request in three, the run SIGKILLed five times and re-run until done, ends equal to a
fault-free run (a real HTTP server on 127.0.0.1, real signals, real SQLite)."""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
from pathlib import Path

from cli_runner import run_cli, start, stored, wait_for
from configs_for_tests import api_judge, prompt_pipeline
from datasets import load_from_disk

from rlaif.testing.loopback import LoopbackJudgeServer


def test_soak_faults_and_kills_end_equal_to_a_fault_free_run(tmp_path, tiny_model):
    """1,000 judgments against a server with 10% 429, 10% 500, 5% dropped connections and
    5% garbage, SIGKILLed at five random moments and re-run until done: the preferences equal
    a fault-free run's, every key is answered once except those in flight at a kill, and no
    preference comes from one order."""
    concurrency, kills = 8, 5
    questions = [f"Question {i}: say something kind." for i in range(520)]

    def config(server: LoopbackJudgeServer, name: str) -> Path:
        judge = api_judge(
            server.openai_url, max_concurrency=concurrency, max_retries=6, timeout_s=1
        )
        return prompt_pipeline(
            tmp_path,
            tiny_model,
            questions,
            judges=[judge],
            eval_size=10,
            name=name,
            judge={"cache": str(tmp_path / f"{name}.sqlite")},
        )

    stages = "sample,pair,judge,aggregate"
    with LoopbackJudgeServer(latency_s=0.01) as clean:
        args = ["run", config(clean, "clean"), "--run-dir", tmp_path / "clean", "--stages", stages]
        done = run_cli(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    expected = load_from_disk(str(tmp_path / "clean" / "preferences"))
    judgments = len(load_from_disk(str(tmp_path / "clean" / "judgments")))
    assert judgments >= 1000

    # the soak starts from the clean run's samples and pairs: only judging differs, so two
    # samplings that a busy CPU's float rounding told apart cannot make the runs differ
    shutil.copytree(tmp_path / "clean", tmp_path / "soak")
    faults = {"429": 0.10, "500": 0.10, "drop": 0.05, "garbage": 0.05}
    rng = random.Random(7)
    with LoopbackJudgeServer(latency_s=0.01, fault_rates=faults, hang_s=1.5, seed=7) as server:
        args = ["run", config(server, "soak"), "--run-dir", tmp_path / "soak", "--stages", stages]
        store = tmp_path / "soak.sqlite"
        for _ in range(kills):
            target = stored(store) + rng.randint(20, judgments // (kills + 1))
            proc = start(args, tmp_path)
            wait_for(proc, lambda t=target: stored(store) >= t, timeout=600)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        runs = 0
        while True:
            runs += 1
            done = run_cli(*args, cwd=tmp_path)
            assert done.returncode in (0, 6), done.stderr
            if done.returncode == 0:
                break
            assert runs < 5
        extra = sum(n - 1 for n in server.answers.values())
        print(
            f"soak: {judgments} judgments, {server.requests} requests, {dict(server.served)} "
            f"served, {kills} kills, {runs} final runs, {extra} answers paid twice"
        )
        assert len(server.answers) == judgments
        assert extra <= kills * concurrency
    got = load_from_disk(str(tmp_path / "soak" / "preferences"))
    assert all(got["complete"]) and all(n == 2 for n in got["n_judgments"])

    def key(rows):
        return sorted(
            (r["pair_id"], r["chosen"][0]["content"], round(r["p_chosen"], 9)) for r in rows
        )

    assert key(got) == key(expected)
    assert not any(math.isnan(p) for p in got["p_chosen"])
