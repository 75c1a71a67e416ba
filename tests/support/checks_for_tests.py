"""Python reward checks for the tests (importable as ``checks_for_tests:...`` in the worker
processes that run them)."""

from __future__ import annotations

import os
import time


def mentions_tea(prompt, completion: str, reference) -> float:
    return float("tea" in completion.lower())


def hangs(prompt, completion: str, reference) -> float:
    time.sleep(3600)
    return 1.0


def crashes(prompt, completion: str, reference) -> float:
    if "crash" in completion:
        os._exit(3)  # the worker dies mid-check, as a segfault would take it
    return 0.5


def hogs_memory(prompt, completion: str, reference) -> float:
    blocks = [bytearray(64 << 20) for _ in range(64)]  # 4 GiB, past any sane limit
    return float(len(blocks))


def says_nonsense(prompt, completion: str, reference) -> object:
    return "plenty"
