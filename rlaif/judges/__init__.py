"""Judge backends behind one interface (:class:`rlaif.judges.base.Judge`), built from the
pipeline config through the one registry, :data:`rlaif.config.JUDGE_BACKENDS`."""

from __future__ import annotations

from importlib import import_module

from rlaif.config import JUDGE_BACKENDS
from rlaif.judges.base import Judge
from rlaif.judges.records import Budget, JudgeRequest, Verdict


def build_judge(cfg) -> Judge:
    """Build the backend a judge config names. Construction validates (rubric, model
    reference, API key variable) without loading weights or calling anyone."""
    module, _, cls = JUDGE_BACKENDS[cfg.backend][1].partition(":")
    return getattr(import_module(module), cls)(cfg)


__all__ = ["Budget", "Judge", "JudgeRequest", "Verdict", "build_judge"]
