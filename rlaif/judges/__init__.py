"""Judge backends behind one small protocol, built from the pipeline config."""

from __future__ import annotations

from importlib import import_module

from rlaif.judges.base import Budget, JudgeBackend, JudgeRequest, Verdict

_BACKENDS = {
    "transformers": "rlaif.judges.transformers:TransformersJudge",
    "python": "rlaif.judges.python:PythonJudge",
    "vllm": "rlaif.judges.vllm:VllmJudge",
    "openai": "rlaif.judges.openai:OpenAIJudge",
    "anthropic": "rlaif.judges.anthropic:AnthropicJudge",
}


def build_judge(cfg) -> JudgeBackend:
    """Build the backend a judge config names. Construction validates (rubric, model
    reference, API key variable) without loading weights or calling anyone."""
    module, _, cls = _BACKENDS[cfg.backend].partition(":")
    return getattr(import_module(module), cls)(cfg)


__all__ = ["Budget", "JudgeBackend", "JudgeRequest", "Verdict", "build_judge"]
