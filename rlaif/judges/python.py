"""A plain Python callable as a judge: rule-based rubrics, tests, deterministic demos.

The callable takes ``(prompt, first, second)`` and returns P(first wins) as a float
in [0, 1], or the label ``"A"`` (first) or ``"B"`` (second). A listwise one
(``mode: listwise``) takes ``(prompt, responses)`` and returns one score per answer, higher
is better (a hard ranking: equal scores tie).
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

from rlaif.config import PythonJudgeConfig
from rlaif.errors import ConfigError
from rlaif.judges.base import BatchJudge, JudgeRequest, Verdict


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


class PythonJudge(BatchJudge):
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
        example = JudgeRequest("What is 2 + 2?", "4.", "2 + 2 is 5.", responses=("4.", "5.", "2"))
        verdict = self._one(example)
        if verdict.status != "ok":
            what = verdict.error if verdict.status == "error" else f"returned {verdict.raw_output}"
            wanted = (
                "one score per answer"
                if self.mode == "listwise"
                else "P(first wins) in [0, 1], or 'A' or 'B'"
            )
            raise ConfigError(
                f"judge '{self.name}': {self.cfg.callable}{_call_text(example, self.mode)} "
                f"{what}; it must return {wanted}"
            )

    def render(self, request: JudgeRequest) -> list[str]:
        if self.mode == "listwise":
            return [request.prompt, *request.responses]
        return [request.prompt, request.first, request.second]

    def judge(self, requests: list[JudgeRequest]) -> list[Verdict]:
        return [self._one(r) for r in requests]

    def _one(self, request: JudgeRequest) -> Verdict:
        if self.mode == "listwise":
            return self._ranked(request)
        try:
            out = self.fn(request.prompt, request.first, request.second)
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
            out = self.fn(request.prompt, list(request.responses))
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


def _call_text(request: JudgeRequest, mode: str) -> str:
    if mode == "listwise":
        return f"({request.prompt!r}, {list(request.responses)!r})"
    return f"({request.prompt!r}, {request.first!r}, {request.second!r})"
