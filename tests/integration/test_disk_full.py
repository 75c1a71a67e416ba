"""A full disk ends a run with one line naming the path and what to free, exit 8, and every
answer received before it stored: the run stops asking judges at the first refused write,
and the next run (with space freed) asks only what is not stored. The disk is a real,
small tmpfs (mounting needs root; the test is skipped without it)."""

import re
import subprocess

import pytest
from cli_runner import run_cli, stored
from configs_for_tests import api_judge, pipeline, write

from rlaif.testing.loopback import LoopbackJudgeServer


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=240k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def judged_into(store, tmp_path, tiny_model, server, prompts: int):
    """A pipeline whose judgments go to ``store`` (on the small disk), written to a file."""
    config = pipeline(
        tmp_path,
        tiny_model,
        judges=[api_judge(server.openai_url)],
        judge={"cache": str(store)},
        prompts={"limit": prompts, "eval_size": 2},
    )
    return write(tmp_path, config)


def test_a_full_disk_is_one_line_and_exit_8_and_nothing_answered_is_paid_twice(
    tmp_path, tiny_model, small_disk
):
    store = small_disk / "judgments.sqlite"
    with LoopbackJudgeServer() as server:
        config = judged_into(store, tmp_path, tiny_model, server, prompts=30)
        args = ["run", config, "--run-dir", tmp_path / "run", "--stages", "sample,pair,judge"]
        full = run_cli(*args, cwd=tmp_path)
        assert full.returncode == 8, full.stderr
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: disk full: cannot write {store} (")
        assert "free at least" in last and "Traceback" not in full.stderr
        unkept = int(re.search(r"the (\d+) that could not be written", last).group(1))
        kept = stored(store)
        assert kept > 0 and server.requests == kept + unkept  # no call after the disk filled

        subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
        again = run_cli(*args, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        total = stored(store)
        assert server.requests == total + unkept  # only the unkept answers were paid twice


def test_a_disk_shared_with_the_run_directory_names_the_write_that_failed(
    tmp_path, tiny_model, small_disk
):
    """The run directory on the full disk too: the manifest (progress, the stage's failure)
    cannot be written either, yet the message is the store's, with what is asked again."""
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    store = small_disk / "judgments.sqlite"
    with LoopbackJudgeServer() as server:
        config = judged_into(store, tmp_path, tiny_model, server, prompts=40)
        args = ["run", config, "--run-dir", small_disk / "run"]
        ready = run_cli(*args, "--stages", "sample,pair", cwd=tmp_path)
        assert ready.returncode == 0, ready.stderr
        used = int(subprocess.check_output(["df", "--output=used", "-k", str(small_disk)])
                   .split()[-1])  # fmt: skip
        subprocess.run(["mount", "-o", f"remount,size={used + 200}k", str(small_disk)], check=True)
        full = run_cli(*args, "--stages", "judge", cwd=tmp_path)
    assert full.returncode == 8, full.stderr
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: disk full: cannot write {store} ("), last
    assert re.search(r"the \d+ that could not be written are asked again", last)
    assert "manifest.json" not in last and "Traceback" not in full.stderr
