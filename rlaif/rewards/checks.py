"""Verifiable reward components: checks of a completion that need no judge.

Each check maps (prompt, completion, reference) to a value, or raises :class:`CheckFailed`
with the reason the value could not be had (a user's check that hung, crashed or returned
nonsense). Patterns run on the policy's text through RE2 (:func:`compile_regex`), so no
completion can make a check backtrack for minutes; a user's Python check runs in worker
processes (``pebble``) with a time and a memory limit, and a worker that hangs or dies is
replaced without touching the training process.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import resource
from concurrent.futures import TimeoutError as FutureTimeout
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


def _limit_memory(megabytes: int) -> None:
    """In a worker, before any check runs: its address space capped (a runaway allocation
    raises MemoryError there, or the worker dies; the trainer never does)."""
    limit = megabytes << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _run_check(target: str, prompt: Prompt, completion: str, reference: str | None) -> float:
    import importlib

    module, _, name = target.partition(":")
    value = getattr(importlib.import_module(module), name)(prompt, completion, reference)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"returned {value!r}, not a finite number")
    return float(value)


class PythonCheck:
    """``module:function(prompt, completion, reference) -> float`` run by ``workers`` spawned
    processes, each call under ``timeout_s`` and each worker under ``memory_mb``."""

    def __init__(self, target: str, *, timeout_s: float, memory_mb: int, workers: int):
        import importlib.util

        module = target.partition(":")[0]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"reward: python check {target}: no module '{module}' to import")
        self.target, self.timeout_s = target, timeout_s
        self._args = (memory_mb, workers)
        self._pool: Any = None

    def _workers(self) -> Any:
        if self._pool is None:
            from pebble import ProcessPool

            memory_mb, workers = self._args
            self._pool = ProcessPool(
                max_workers=workers,
                initializer=_limit_memory,
                initargs=(memory_mb,),
                context=multiprocessing.get_context("spawn"),
            )
        return self._pool

    def many(self, items: list[tuple[Prompt, str, str | None]]) -> list[float | CheckFailed]:
        """Each item's value, or the failure that took its place."""
        pool = self._workers()
        futures = [
            pool.schedule(_run_check, args=(self.target, *item), timeout=self.timeout_s)
            for item in items
        ]
        out: list[float | CheckFailed] = []
        for future in futures:
            try:
                out.append(future.result())
            except FutureTimeout:
                out.append(CheckFailed(f"{self.target} ran past {self.timeout_s:g} s"))
            except MemoryError:
                out.append(CheckFailed(f"{self.target} ran out of memory"))
            except Exception as exc:  # the worker died (ProcessExpired) or the check raised
                out.append(CheckFailed(f"{self.target}: {type(exc).__name__}: {exc}"))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join(timeout=10)
            self._pool = None
