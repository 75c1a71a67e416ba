"""Verifiable reward components: checks of a completion that need no judge.

Each check maps (prompt, completion, reference) to a value, or raises :class:`CheckFailed`
with the reason the value could not be had (a user's check that hung, crashed or returned
nonsense). Patterns run on the policy's text through RE2 (:func:`compile_regex`), so no
completion can make a check backtrack for minutes; a user's Python check runs in worker
processes of its own (:mod:`rlaif.rewards.check_worker`) with a time and a memory limit, and a
worker that hangs or dies is replaced without touching the training process.
"""

from __future__ import annotations

import json
import math
import os
import queue
import select
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from functools import lru_cache
from typing import Any

from rlaif.chat import Prompt
from rlaif.errors import ConfigError
from rlaif.rubrics.checklists import compile_regex


class CheckFailed(Exception):
    """A check that gave no value; the message says why."""


# -- the final answer --------------------------------------------------------------------

_ANSWER_IS = compile_regex(r"(?i)(?:final answer|answer)\s*(?:is|:)\s*:?\s*([^\n]+)")
_NUMBER = compile_regex(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?%?")


def final_answer(text: str) -> str | None:
    """What a completion gives as its answer: the last ``\\boxed{...}``, else what follows the
    last "answer is" / "Answer:", else its last number; None when it has none."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    said = [m.group(1) for m in _ANSWER_IS.finditer(text)]
    if said:
        return said[-1].strip().rstrip(".").strip()
    numbers = [m.group(0) for m in _NUMBER.finditer(text)]
    return numbers[-1] if numbers else None


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, at = 0, start + len("\\boxed{")
    for end in range(at, len(text)):
        if text[end] == "{":
            depth += 1
        elif text[end] == "}":
            if depth == 0:
                return text[at:end]
            depth -= 1
    return None


def as_number(text: str) -> float | None:
    """``text`` as a number when it is one: ``1,000``, ``-2.5``, ``1e3``, ``3/4``, ``50%``,
    ``$12``, ``\\frac{3}{4}``; None otherwise."""
    t = text.strip().strip("$").replace("\\$", "").replace("\\%", "%").replace(" ", "")
    t = t.rstrip(".")
    if t.startswith("\\frac{") and t.endswith("}") and "}{" in t:
        t = t[len("\\frac{") : -1].replace("}{", "/")
    percent = t.endswith("%")
    t = t.rstrip("%").replace(",", "")
    try:
        value = float(Fraction(t)) if "/" in t else float(t)
    except (ValueError, ZeroDivisionError):
        return None
    if not math.isfinite(value):
        return None
    return value / 100 if percent else value


def _folded(text: str) -> str:
    out = text.strip().strip("$*\"'`").rstrip(".").strip()
    return " ".join(out.lower().split())


def same_answer(given: str, reference: str, tolerance: float = 1e-6) -> bool:
    """Whether the completion's answer ``given`` is the reference's: as numbers where both are
    numbers (within a relative ``tolerance``), else as text, case and spacing folded."""
    a, b = as_number(given), as_number(reference)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    return _folded(given) == _folded(reference)


def exact_answer(completion: str, reference: str | None, tolerance: float = 1e-6) -> float:
    """1.0 when the completion's final answer is the reference's final answer, else 0.0."""
    if not reference:
        raise CheckFailed("no reference answer to compare with")
    given = final_answer(completion)
    wanted = final_answer(reference) or reference
    return float(given is not None and same_answer(given, wanted, tolerance))


# -- patterns and formats ------------------------------------------------------------------


def regex(completion: str, pattern: str) -> float:
    return float(compile_regex(pattern).search(completion) is not None)


def json_value(text: str) -> Any:
    """The JSON a completion holds: all of it, else a fenced code block's, else the first
    object or array in it; ``ValueError`` when there is none."""
    decoder = json.JSONDecoder()
    candidates = [text.strip()]
    fence = text.find("```")
    if fence >= 0:
        body = text[fence + 3 :]
        body = body[body.find("\n") + 1 :] if "\n" in body else body
        candidates.append(body[: body.find("```")] if "```" in body else body)
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    for n, char in enumerate(text):
        if char in "{[":
            try:
                return decoder.raw_decode(text, n)[0]
            except ValueError:
                continue
    raise ValueError("no JSON in the completion")


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    import jsonschema

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def json_schema(completion: str, schema: dict[str, Any]) -> float:
    """1.0 when the completion's JSON is valid against ``schema``, else 0.0."""
    try:
        value = json_value(completion)
    except ValueError:
        return 0.0
    return float(_validator(json.dumps(schema, sort_keys=True)).is_valid(value))


# -- a user's python check, in worker processes --------------------------------------------


class _Worker:
    """One ``check_worker`` process: its memory capped, replaced when it hangs or dies."""

    def __init__(self, target: str, memory_mb: int, env: dict[str, str]):
        # the worker caps its own memory before it imports the check (a preexec_fn could
        # deadlock a parent with threads)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rlaif.rewards.check_worker", target, str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def ask(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The worker's answer: ``value`` or ``error``; ``lost`` when it gave none (``died``
        or ``timeout``)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError:
            return {"lost": "died"}
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            return {"lost": "timeout"}
        line = self.process.stdout.readline()
        return json.loads(line) if line else {"lost": "died"}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class PythonCheck:
    """``module:function(prompt, completion, reference) -> float`` run by ``workers``
    processes side by side, each call under ``timeout_s`` and each process under
    ``memory_mb``. A check that hangs, crashes or runs out of memory fails that call alone:
    its worker is replaced."""

    def __init__(self, target: str, *, timeout_s: float, memory_mb: int, workers: int):
        import importlib.util

        module = target.partition(":")[0]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"reward: python check {target}: no module '{module}' to import")
        self.target, self.timeout_s, self.memory_mb = target, timeout_s, memory_mb
        self.size = workers
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._started = 0
        self._lock = threading.Lock()

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle.empty() and self._started < self.size:
                self._started += 1
                return _Worker(self.target, self.memory_mb, self._env)
        return self._idle.get()

    def one(self, prompt: Prompt, completion: str, reference: str | None) -> float | CheckFailed:
        worker = self._take()
        request = {"prompt": prompt, "completion": completion, "reference": reference}
        answer = worker.ask(request, self.timeout_s)
        if "lost" in answer:  # hung or died: a fresh worker takes its place
            worker.stop()
            self._idle.put(_Worker(self.target, self.memory_mb, self._env))
            if answer["lost"] == "died":
                return CheckFailed(f"{self.target}: its process died (out of memory or a crash)")
            return CheckFailed(f"{self.target} ran past {self.timeout_s:g} s")
        self._idle.put(worker)
        if "error" in answer:
            return CheckFailed(f"{self.target}: {answer['error']}")
        return float(answer["value"])

    def many(self, items: list[tuple[Prompt, str, str | None]]) -> list[float | CheckFailed]:
        """Each item's value, or the failure that took its place."""
        with ThreadPoolExecutor(self.size) as pool:
            return list(pool.map(lambda item: self.one(*item), items))

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get().stop()
