"""Run the ``rlaif`` CLI in a fresh process, as a user would (tests' judges importable), to
the end or in the background to be killed."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

# The tests' own modules (judges a config names as ``judges_for_tests:...``) are importable in
# every process a test starts, as a user's judge module in the working directory would be.
SUPPORT = Path(__file__).resolve().parent
# A vLLM engine (server or offline) in a test: a small KV cache, and quiet.
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_LOGGING_LEVEL": "WARNING"}


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(SUPPORT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "rlaif.cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """The CLI in a child process, its output in a file (a pipe nobody reads would stall it)."""
    log = cwd / f"run-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlaif.cli", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(SUPPORT), **(env or {})},
        )
    proc.log = log
    return proc


def stored(path: Path) -> int:
    """Judgments in the store, read without writing (the run under test owns the writes)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        return db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
    except sqlite3.OperationalError:  # the run has not created the table yet
        return 0
    finally:
        db.close()


def wait_for(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended first: {proc.log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.02)


def sets(items: list[str]) -> list[str]:
    """``--set`` before each ``key=value`` override."""
    return [arg for item in items for arg in ("--set", item)]
