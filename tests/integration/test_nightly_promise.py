"""The nightly promise under real faults: no judgment lost, none paid twice, nothing published
from half the evidence. Each test reproduces one way a real night broke it (a real HTTP server
on 127.0.0.1, real signals, real SQLite), then shows it holds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli, start, stored, wait_for
from configs_for_tests import (
    SECRET,
    api_judge,
    echoed_key_pipeline,
    pipeline,
    prompt_pipeline,
    write,
)
from datasets import load_from_disk

from rlaif.judging.store import JudgmentStore
from rlaif.ops.nightly import Ledger
from rlaif.run.run_dir import read_manifest
from rlaif.testing.loopback import LoopbackJudgeServer

QUESTIONS = [f"Question {i}: how many legs does a spider have?" for i in range(6)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage(run_dir: Path, name: str) -> dict:
    return read_manifest(run_dir)["stages"][name]


# 1, 2 and 3: an outage, failed judgments, retries that change the preferences ------------------


def test_an_unreachable_judge_fails_clearly_and_the_run_recovers_when_it_is_back(
    tmp_path, tiny_model
):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cfg = write(tmp_path, pipeline(tmp_path, tiny_model, judges=[api_judge(url)]))
    run_dir = tmp_path / "run"
    args = ["run", cfg, "--run-dir", run_dir, "--stages", "sample,pair,judge,aggregate"]
    down = run_cli(*args, cwd=tmp_path)
    assert down.returncode == 2, down.stderr
    assert f"judge 'api': nothing answers at {url}" in down.stderr  # found by preflight
    assert not (run_dir / "samples").exists()  # before any sampling
    assert stored(tmp_path / "judgments.sqlite") == 0  # nothing learned, nothing kept
    with LoopbackJudgeServer(port=port) as server:
        up = run_cli(*args, cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        assert stage(run_dir, "judge")["status"] == "completed"
        assert len(load_from_disk(str(run_dir / "preferences"))) > 0
        assert server.requests == stage(run_dir, "judge")["counts"]["judgments"]


def test_failed_judgments_make_a_partial_stage_that_the_next_run_completes(tmp_path, tiny_model):
    """Two prompts' judgments fail twice (the run's retries) and then succeed: the first run
    publishes nothing (exit 6, reasons counted), the second asks only those again and
    aggregate runs again on the filled-in judgments; a third run does nothing."""
    with LoopbackJudgeServer() as server:
        cfg = prompt_pipeline(
            tmp_path,
            tiny_model,
            [*QUESTIONS[:4], "[[500:2]] flaky one", "[[500:2]] flaky two"],
            judges=[api_judge(server.openai_url)],
            eval_size=0,
        )
        run_dir = tmp_path / "run"
        args = ["run", cfg, "--run-dir", run_dir, "--stages", "sample,pair,judge,aggregate"]
        first = run_cli(*args, cwd=tmp_path)
        assert first.returncode == 6, first.stderr
        judge = stage(run_dir, "judge")
        assert judge["status"] == "partial" and judge["partial_reason"] == "failures"
        judgments = load_from_disk(str(run_dir / "judgments"))
        flaky = sum("flaky" in p for p in judgments["prompt"])
        assert flaky > 0
        assert judge["counts"]["failures"] == {
            "retryable": flaky,
            "gave_up": 0,
            "reasons": {"InternalServerError 500": flaky},
        }
        assert "incomplete: stage judge has" in first.stderr
        assert not (run_dir / "preferences").exists()  # nothing published from half the evidence
        status = run_cli("status", run_dir, cwd=tmp_path)
        assert "partial" in status.stdout and "InternalServerError 500" in status.stdout

        calls = server.requests
        second = run_cli(*args, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert server.requests - calls == flaky  # only the failed ones, each answered now
        prefs = load_from_disk(str(run_dir / "preferences"))
        assert len(prefs) == len(set(judgments["pair_id"]))  # every pair, the flaky ones too
        assert all(prefs["complete"])

        calls = server.requests
        third = run_cli(*args, cwd=tmp_path)
        assert third.returncode == 0 and server.requests == calls
        assert third.stderr.count("complete, skipped") == 4


def test_judgments_that_keep_failing_are_given_up_and_their_prompts_come_back(tmp_path, tiny_model):
    """After judge.max_failures runs a key is given up: the night completes and publishes the
    complete pairs, and the prompt whose pairs lack evidence is not marked seen."""
    with LoopbackJudgeServer() as server:
        cfg = prompt_pipeline(
            tmp_path,
            tiny_model,
            [*QUESTIONS[:4], "[[always500]] broken"],
            judges=[api_judge(server.openai_url, max_retries=0)],
            eval_size=0,
            judge={"max_failures": 2},
        )
        args = ["nightly", cfg, "--date", "2026-01-01"]
        assert run_cli(*args, cwd=tmp_path).returncode == 6  # failed once: try again
        last = run_cli(*args, cwd=tmp_path)
        assert last.returncode == 0, last.stderr  # failed twice: given up
    root = tmp_path / "outputs" / "t" / "nightly"
    night = root / "2026-01-01"
    assert stage(night, "judge")["counts"]["failures"]["gave_up"] > 0
    assert stage(night, "aggregate")["counts"]["incomplete_pairs"] == {"failed": 1}
    ledger = Ledger(root / "ledger.sqlite")
    seen = {row[0] for row in ledger._db.execute("SELECT prompt_id FROM seen")}
    ledger.close()
    train = load_from_disk(str(night / "prompts" / "train"))
    broken = {r["prompt_id"] for r in train if "broken" in r["prompt"]}
    assert broken and not broken & seen
    assert seen == set(train["prompt_id"]) - broken
    with JudgmentStore(tmp_path / "judgments.sqlite") as store:
        bad = [r for r in store if r["status"] == "error"]
        assert bad and all(r["failures"] == 2 for r in bad)
        assert len(store.failure_history(bad[0]["key"])) == 2


# 4: a crash or Ctrl-C never pays again for an answer that arrived ------------------------------


def test_ctrl_c_lets_calls_in_flight_finish_and_pays_nothing_twice(tmp_path, tiny_model):
    with LoopbackJudgeServer(latency_s=0.3) as server:
        cfg = prompt_pipeline(
            tmp_path,
            tiny_model,
            [f"Question {i}: name a fruit." for i in range(20)],
            judges=[api_judge(server.openai_url, max_concurrency=4)],
        )
        args = ["run", cfg, "--run-dir", tmp_path / "run", "--stages", "sample,pair,judge"]
        proc = start(args, tmp_path)
        wait_for(proc, lambda: stored(tmp_path / "judgments.sqlite") >= 4)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        out = proc.log.read_text()
        assert "interrupted: every judgment that arrived is stored" in out
        assert "Traceback" not in out
        assert stage(tmp_path / "run", "judge")["status"] == "interrupted"
        assert run_cli(*args, cwd=tmp_path).returncode == 0
        assert max(server.answers.values()) == 1


# 5: runs that share a store ------------------------------------------------------------------


def test_two_runs_on_one_store_pay_once_for_each_key(tmp_path, tiny_model):
    with LoopbackJudgeServer(latency_s=0.1) as server:
        cfg = prompt_pipeline(
            tmp_path,
            tiny_model,
            [f"Question {i}: name a tree." for i in range(16)],
            judges=[api_judge(server.openai_url, max_concurrency=2)],
        )
        runs = [
            start(["run", cfg, "--run-dir", tmp_path / f"run{i}", "--stages", "sample,pair,judge"],
                  tmp_path)
            for i in range(2)
        ]  # fmt: skip
        assert [p.wait(timeout=300) for p in runs] == [0, 0], runs[0].log.read_text()[-2000:]
        keys = set(load_from_disk(str(tmp_path / "run0" / "judgments"))["key"])
        assert keys == set(load_from_disk(str(tmp_path / "run1" / "judgments"))["key"])
        assert server.requests == len(server.answers) == len(keys)


# 6: secrets ----------------------------------------------------------------------------------


def test_a_key_echoed_by_the_server_is_redacted_everywhere(tmp_path, tiny_model):
    with LoopbackJudgeServer(echo_key=True) as server:
        cfg = echoed_key_pipeline(tmp_path, tiny_model, server.openai_url)
        done = run_cli(
            "run", cfg, "--run-dir", tmp_path / "run", "--stages", "sample,pair,judge",
            cwd=tmp_path, env={"RLAIF_TEST_SECRET": SECRET},
        )  # fmt: skip
    assert done.returncode == 2
    assert "invalid api key" in done.stderr and "[REDACTED]" in done.stderr
    assert SECRET not in done.stdout + done.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_key_pasted_into_api_key_env_is_refused_without_being_printed(tmp_path, tiny_model):
    secret = "sk-proj-AbCdEf0123456789AbCdEf0123456789"
    cfg = write(tmp_path, pipeline(tmp_path, tiny_model, judges=[api_judge("http://x/v1")]))
    done = run_cli("run", cfg, "--set", f"judge.judges.0.api_key_env={secret}", cwd=tmp_path)
    assert done.returncode == 2
    assert "api_key_env" in done.stderr and "looks like an API key" in done.stderr
    assert secret not in done.stdout + done.stderr


# 7: clear errors, before any money is spent --------------------------------------------------


def test_clear_errors_for_bad_files_and_directories(tmp_path, tiny_model):
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = write(tmp_path, pipeline(tmp_path, tiny_model))

    def run(*extra: str):
        return run_cli("run", cfg, "--stages", "sample", *extra, cwd=tmp_path)

    bad = run("--set", f"prompts.source={latin1}", "--set", "prompts.id_column=null")
    assert bad.returncode == 2 and f"{latin1}:2: not UTF-8 text" in bad.stderr
    bad = run("--set", f"prompts.source={empty}")
    assert bad.returncode == 2 and "the file is empty" in bad.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    bad = run("--run-dir", str(a_file))
    assert bad.returncode == 2 and "the run directory is a file" in bad.stderr
    read_only = Path("/proc/rlaif-run")  # a read-only file system on every Linux
    bad = run("--run-dir", str(read_only))
    assert bad.returncode == 2 and "cannot write the run directory" in bad.stderr
    for out in (bad.stdout, bad.stderr):
        assert "Traceback" not in out


def test_a_damaged_store_says_how_to_recover_and_salvage_keeps_what_is_readable(
    tmp_path, tiny_model
):
    cfg = write(tmp_path, pipeline(tmp_path, tiny_model))
    args = ["run", cfg, "--run-dir", tmp_path / "run", "--stages", "sample,pair,judge"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    store = tmp_path / "judgments.sqlite"
    before = stored(store)
    for side in ("-wal", "-shm"):
        Path(f"{store}{side}").unlink(missing_ok=True)
    store.write_bytes(b"this is not a database" + store.read_bytes()[100:])
    bad = run_cli(*args, cwd=tmp_path)
    assert bad.returncode == 2
    assert f"{store}: the judgment store is damaged" in bad.stderr
    assert "rlaif cache salvage" in bad.stderr and "Traceback" not in bad.stderr

    # the header is gone, so nothing is readable; the file is kept aside, a fresh store is made
    salvaged = run_cli("cache", "salvage", "--store", store, cwd=tmp_path)
    assert salvaged.returncode == 0 and "moved the damaged file" in salvaged.stdout
    assert list(tmp_path.glob("judgments.sqlite.damaged-*"))
    assert stored(store) == 0 < before
    again = run_cli(*args, "--set", "judge.orders=original", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # judged anew into the fresh store
    assert stored(store) == before // 2


def test_salvage_copies_every_row_sqlite_can_read(tmp_path):
    from rlaif.judging.store import StoreDamagedError, salvage

    path = tmp_path / "j.sqlite"
    with JudgmentStore(path) as store:
        rows = ({"key": f"k{i}", "status": "ok", "raw_output": "x" * 50} for i in range(2000))
        store.put_many(rows)
        store.put_label("k1", "A", reviewer="ann")
        store.put_label("k2", "flag", reviewer="bob")
    data = bytearray(path.read_bytes())
    page = len(data) // 4096 - 3  # a leaf page near the end
    data[page * 4096 + 8 : page * 4096 + 4000] = b"\xff" * 3992
    path.write_bytes(bytes(data))
    store = JudgmentStore(path)
    with pytest.raises(StoreDamagedError, match="rlaif cache salvage"):
        store.get_many(f"k{i}" for i in range(2000))
    store.close()
    done = salvage(path)
    assert 1500 < done["salvaged"] < 2000 and Path(done["moved_to"]).exists()
    assert done["lost"] == 2000 - done["salvaged"]  # every key accounted for
    with JudgmentStore(path) as store:
        assert len(store) == done["salvaged"]
        assert {k: v["label"] for k, v in store.human_labels().items()} == {"k1": "A", "k2": "flag"}
    assert done["labels"] == 2


def test_salvage_reads_past_a_truncated_end_and_garbage_in_the_middle(tmp_path):
    """Page-level recovery: rows before a truncation, and rows on both sides of a run of
    garbage pages, are kept; the loss is counted where the file's end still says it."""
    from rlaif.judging.store import salvage

    def damaged(name, damage):
        path = tmp_path / name
        with JudgmentStore(path) as store:
            store.put_many(
                {"key": f"k{i}", "status": "ok", "raw_output": "x" * 200} for i in range(2000)
            )
        for side in ("-wal", "-shm"):
            Path(f"{path}{side}").unlink(missing_ok=True)
        path.write_bytes(damage(bytearray(path.read_bytes())))
        return path

    half = salvage(damaged("half.sqlite", lambda data: data[: len(data) // 2]))
    assert 800 < half["salvaged"] < 1000 and half["lost"] is None

    def garbage(data):
        data[len(data) // 3 : len(data) // 3 + 60_000] = b"Z" * 60_000
        return data

    middle = salvage(damaged("middle.sqlite", garbage))
    assert 1600 < middle["salvaged"] < 2000 and middle["lost"] == 2000 - middle["salvaged"]


@pytest.mark.parametrize(
    ("callable_", "said"),
    [
        ("judges_for_tests:returns_too_much", "returned 1.7"),
        ("judges_for_tests:returns_c", "returned 'C'"),
        ("judges_for_tests:returns_nan", "returned nan"),
        ("judges_for_tests:raises", "raised ValueError: no rules yet"),
    ],
)
def test_a_python_judge_that_answers_nonsense_fails_before_sampling(
    tmp_path, tiny_model, callable_, said
):
    cfg = write(
        tmp_path,
        pipeline(tmp_path, tiny_model, judges=[{"backend": "python", "callable": callable_}]),
    )
    bad = run_cli("run", cfg, "--run-dir", tmp_path / "run", cwd=tmp_path)
    assert bad.returncode == 2
    assert callable_ in bad.stderr and said in bad.stderr and "must return" in bad.stderr
    assert not (tmp_path / "run").exists()


def test_a_judge_module_in_the_working_directory_is_importable(tmp_path, tiny_model):
    (tmp_path / "myrules.py").write_text("def f(prompt, first, second):\n    return 0.5\n")
    cfg = write(
        tmp_path,
        pipeline(tmp_path, tiny_model, judges=[{"backend": "python", "callable": "myrules:f"}]),
    )
    # the console script, as a user runs it: its sys.path does not start with the working dir
    done = subprocess.run(
        [Path(sys.executable).with_name("rlaif"), "run", cfg, "--run-dir", tmp_path / "run",
         "--stages", "sample,,judge"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stage(tmp_path / "run", "judge")["status"] == "completed"


@pytest.mark.parametrize("labels", [["Answer A", "Answer B"], [" A", "A "]])
def test_labels_that_are_not_single_tokens_are_refused(tmp_path, labels):
    rubric = tmp_path / "labels.jinja"
    rubric.write_text(
        f"---\nname: labels\nlabels: {json.dumps(labels)}\n"
        "variables: [prompt, response_a, response_b]\n---\n"
        "{{ prompt }} {{ response_a }} {{ response_b }}\n"
    )
    bad = run_cli("rubrics", "check", rubric)
    assert bad.returncode == 2 and "single-token labels" in bad.stderr


def test_rubrics_check_against_a_judge_reads_its_tokenizer(tmp_path, tiny_model):
    rubric = tmp_path / "long.jinja"
    rubric.write_text(
        "---\nname: long\nlabels: [Antidisestablishmentarianism, B]\n"
        "variables: [prompt, response_a, response_b]\n---\n"
        "{{ prompt }} {{ response_a }} {{ response_b }}\n"
    )
    cfg = write(
        tmp_path,
        pipeline(tmp_path, tiny_model, judges=[{"name": "local", "model": str(tiny_model)}]),
    )
    assert run_cli("rubrics", "check", rubric).returncode == 0  # one word: fine without a judge
    bad = run_cli("rubrics", "check", rubric, "--pipeline", cfg, "--judge", "local")
    assert bad.returncode == 2
    assert "label 'Antidisestablishmentarianism' is" in bad.stderr and "tokens" in bad.stderr
    good = run_cli("rubrics", "check", "--pipeline", cfg, "--judge", "local")
    assert good.returncode == 0 and "helpful_harmless@1" in good.stdout


# 8: prompt size ------------------------------------------------------------------------------


def test_overlong_prompts_are_skipped_and_counted(tmp_path, tiny_model):
    huge = "Please summarise this. " + "lorem ipsum dolor sit amet " * 2500  # ~65 KB
    cfg = prompt_pipeline(tmp_path, tiny_model, [*QUESTIONS[:5], huge], eval_size=1)
    done = run_cli("run", cfg, "--run-dir", tmp_path / "run", "--stages", "sample", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "longer than prompts.max_prompt_tokens=1024" in done.stderr
    manifest = read_manifest(tmp_path / "run")
    assert manifest["prompts"]["too_long"] == 1
    samples = load_from_disk(str(tmp_path / "run" / "samples"))
    assert huge not in samples["prompt"]
