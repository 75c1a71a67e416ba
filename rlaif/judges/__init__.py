"""Judge backends behind one interface (:class:`rlaif.judges.base.Judge`), built from the
pipeline config through the one registry, :data:`rlaif.config.JUDGE_BACKENDS`."""

from __future__ import annotations

import importlib.util
from importlib import import_module

from rlaif.config import JUDGE_BACKENDS
from rlaif.errors import ConfigError
from rlaif.judges.base import Judge
from rlaif.judges.records import Budget, JudgeRequest, Verdict


def build_judge(cfg) -> Judge:
    """Build the backend a judge config names. Construction validates (rubric, model
    reference, API key variable) without loading weights or calling anyone. A module the
    backend needs that is not installed is a :class:`ConfigError` saying how to install it."""
    where = f"judge '{cfg.name}' (backend {cfg.backend})"
    for needed, how in cfg.requires.items():
        if importlib.util.find_spec(needed) is None:
            raise ConfigError(f"{where} needs {needed}, which is not installed here: {how}")
    module, _, cls = JUDGE_BACKENDS[cfg.backend][1].partition(":")
    try:
        judge_class = getattr(import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{where}: {module} needs {exc.name}, which is not installed here "
            f"(pip install {(exc.name or '').split('.')[0]})"
        ) from exc
    return judge_class(cfg)


__all__ = ["Budget", "Judge", "JudgeRequest", "Verdict", "build_judge"]
