"""A plain Python callable as a judge: rule-based rubrics, tests, deterministic demos.

The callable takes ``(prompt, first, second)`` and returns P(first wins) as a float
in [0, 1], or the label ``"A"`` (first) or ``"B"`` (second). A listwise one
(``mode: listwise``) takes ``(prompt, responses)`` and returns one score per answer, higher
is better (a hard ranking: equal scores tie). A checklist writer (``mode: checklist``) takes
``(prompt)`` and returns the prompt's checklist: a list of requirements, each a text or a
mapping with ``requirement``, ``weight``, ``check`` and ``value``
(:mod:`rlaif.rubrics.checklists`); an items judge (``mode: checklist_items``) takes
``(prompt, response, items)`` and returns whether the response meets each item (``True`` or
``"yes"``, one per item). A prompt that is a conversation reaches the callable as its list
of messages (one of a single user message as its text).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from rlaif.chat import plain
from rlaif.config import PythonJudgeConfig
from rlaif.errors import ConfigError
from rlaif.judges.base import Budget, Judge, JudgeRequest, OnResult, Verdict
from rlaif.rubrics.checklists import items_json, read_items, read_met


def import_callable(spec: str, *, field: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise ConfigError(f"{field}: '{spec}' must look like 'module:function'")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # the console script does not put the working dir there
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{field}: cannot import module '{module_name}': {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{field}: module '{module_name}' has no callable '{attr}'")
    return fn


class PythonJudge(Judge):
    def __init__(self, cfg: PythonJudgeConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.fn = import_callable(cfg.callable, field=f"judge '{cfg.name}'.callable")
        try:
            source = inspect.getsource(self.fn)
        except (OSError, TypeError):
            source = cfg.callable
        self._hash = hashlib.sha256(source.encode()).hexdigest()

    @property
    def mode(self) -> str:
        return self.cfg.mode

    def identity(self) -> dict[str, Any]:
        return {"backend": "python", "callable": self.cfg.callable, "source_hash": self._hash}

    def provenance(self) -> dict[str, str]:
        return {"rubric_id": self.cfg.callable, "rubric_hash": self._hash}

    def check(self) -> None:
        """Call the function once on an example: one that raises or returns something other
        than a probability or a label would fail every judgment."""
        example = JudgeRequest(
            "What is 2 + 2?",
            "4.",
            "2 + 2 is 5.",
            responses=("4.", "5.", "2"),
            items=("Gives a number", "Is one sentence"),
        )
        verdict = self._one(example)
        if verdict.status != "ok":
            what = verdict.error if verdict.status == "error" else f"returned {verdict.raw_output}"
            wanted = {
                "listwise": "one score per answer",
                "checklist": "a list of 1 to 8 requirements",
                "checklist_items": "yes or no for each item",
            }.get(self.mode, "P(first wins) in [0, 1], or 'A' or 'B'")
            raise ConfigError(
                f"judge '{self.name}': {self.cfg.callable}{_call_text(example, self.mode)} "
                f"{what}; it must return {wanted}"
            )

    def render(self, request: JudgeRequest) -> list[str]:
        if self.mode == "listwise":
            return [plain(request.prompt), *request.responses]
        if self.mode == "checklist":
            return [request.prompt]
        if self.mode == "checklist_items":
            return [plain(request.prompt), request.first, *request.items]
        return [plain(request.prompt), request.first, request.second]

    def run(self, requests: list[JudgeRequest], on_result: OnResult, budget: Budget) -> None:
        """One call at a time, each answer handed on (and stored) as it returns: a callable
        may call a paid service of its own, and a kill then loses only the call in flight."""
        for index, request in enumerate(requests):
            if not budget.allows():
                return
            on_result(index, self._one(request))

    def _one(self, request: JudgeRequest) -> Verdict:
        if self.mode == "listwise":
            return self._ranked(request)
        if self.mode in ("checklist", "checklist_items"):
            return self._checklist(request)
        try:
            out = self.fn(plain(request.prompt), request.first, request.second)
        except Exception as exc:
            return Verdict(
                status="error", raw_output="", error=f"raised {type(exc).__name__}: {exc}"
            )
        if out in ("A", "B"):
            return Verdict(
                status="ok", raw_output=out, verdict=out, p_first=1.0 if out == "A" else 0.0
            )
        if (
            isinstance(out, (int, float))
            and not isinstance(out, bool)
            and math.isfinite(out)
            and 0.0 <= out <= 1.0
        ):
            return Verdict(
                status="ok",
                raw_output=repr(out),
                verdict="A" if out >= 0.5 else "B",
                p_first=float(out),
            )
        return Verdict(
            status="invalid",
            raw_output=repr(out),
            error="expected a probability in [0, 1] or 'A'/'B'",
        )

    def _ranked(self, request: JudgeRequest) -> Verdict:
        try:
            out = self.fn(plain(request.prompt), list(request.responses))
        except Exception as exc:
            return Verdict(
                status="error", raw_output="", error=f"raised {type(exc).__name__}: {exc}"
            )
        try:
            points = [float(x) for x in out]
        except (TypeError, ValueError):
            points = []
        if len(points) != len(request.responses) or not all(map(math.isfinite, points)):
            return Verdict(
                status="invalid",
                raw_output=repr(out),
                error=f"expected {len(request.responses)} finite scores, one per answer",
            )
        best = max(range(len(points)), key=points.__getitem__)
        return Verdict(
            status="ok",
            raw_output=repr(out),
            verdict=str(best),
            ranking=json.dumps({"points": points}),
        )

    def _checklist(self, request: JudgeRequest) -> Verdict:
        """A checklist written, or the answers on one's items."""
        writes = self.mode == "checklist"
        try:
            out = (
                self.fn(plain(request.prompt))
                if writes
                else self.fn(plain(request.prompt), request.first, list(request.items))
            )
        except Exception as exc:
            return Verdict(
                status="error", raw_output="", error=f"raised {type(exc).__name__}: {exc}"
            )
        try:
            items = (
                items_json(read_items(out))
                if writes
                else json.dumps(read_met(out, len(request.items)))
            )
        except ValueError as exc:
            return Verdict(status="invalid", raw_output=repr(out), error=str(exc))
        return Verdict(status="ok", raw_output=items, items=items)


def _call_text(request: JudgeRequest, mode: str) -> str:
    if mode == "checklist":
        return f"({request.prompt!r})"
    if mode == "checklist_items":
        return f"({request.prompt!r}, {request.first!r}, {list(request.items)!r})"
    if mode == "listwise":
        return f"({request.prompt!r}, {list(request.responses)!r})"
    return f"({request.prompt!r}, {request.first!r}, {request.second!r})"
