"""What the stage-against-raw-engine benchmarks share: interleaved repeats, medians, the
JSON last line that ``run_all.py`` collects."""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
from collections.abc import Callable


def quiet() -> None:
    """Keep the timed loops free of log lines and progress bars from the libraries."""
    logging.disable(logging.INFO)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def interleaved(sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each side ``repeats`` times, alternating which goes first, so a load spike from
    another process on a shared machine hits both sides alike. Each side returns its figure."""
    names = list(sides)
    figures: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            figures[name].append(sides[name]())
            print(f"  repeat {r + 1}/{repeats} {name}: {figures[name][-1]:.4g}", flush=True)
    return figures


def median(values: list[float]) -> float:
    return statistics.median(values)


def emit(figures: dict) -> None:
    """The last line of every benchmark: one JSON object with ``benchmark``, ``rlaif_*``,
    ``raw_*`` and ``ratio``."""
    print(json.dumps(figures), flush=True)


def start_loopback(base_url: str | None) -> tuple[subprocess.Popen | None, str]:
    """The loopback judge server (100 ms an answer) in its own process, so its CPU is not
    counted against the client being measured; an external ``base_url`` is used as is."""
    if base_url is not None:
        return None, base_url
    server = subprocess.Popen(
        [sys.executable, "-m", "rlaif.testing.loopback", "--latency", "0.1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    return server, server.stdout.readline().strip() + "/v1"
