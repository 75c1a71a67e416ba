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
from cli_runner import SUPPORT, run_cli
from configs_for_tests import nightly_config, nightly_prompts
from datasets import load_from_disk

from rlaif.judging.store import JudgmentStore
from rlaif.ops.nightly import Ledger, latest_preferences, nightly_root, run_nightly
from rlaif.run.run_dir import read_manifest
from rlaif.run.runner import Pipeline


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    return nightly_prompts(tmp_path)


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
