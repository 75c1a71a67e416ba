"""Judge backends behind one small protocol, built from the pipeline config."""

from __future__ import annotations

from rlaif.config import PythonJudgeConfig, TransformersJudgeConfig
from rlaif.judges.base import JudgeBackend, JudgeRequest, Verdict


def build_judge(cfg: TransformersJudgeConfig | PythonJudgeConfig) -> JudgeBackend:
    """Build a backend; heavy resources (model weights) load on first ``judge`` call."""
    if cfg.backend == "transformers":
        from rlaif.judges.transformers import TransformersJudge

        return TransformersJudge(cfg)
    from rlaif.judges.python import PythonJudge

    return PythonJudge(cfg)


__all__ = ["JudgeBackend", "JudgeRequest", "Verdict", "build_judge"]
