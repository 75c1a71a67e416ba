"""Typed pipeline configuration, loaded from YAML (the shipped ones in top-level ``pipelines/``).

Every model forbids unknown keys, so a typo in a nightly config fails before any compute is
spent, with the file, line and field named. One file per concern: ``pipeline.py`` (the whole
pipeline and its hash), ``data.py`` (prompts, sampling, pairs, aggregation), ``judge.py``,
``reward.py``, ``training.py`` (and evaluation), ``monitor.py``, ``schedule.py`` (nightly,
rounds), ``loading.py`` (YAML, overrides, errors), ``base.py``; this module is every config's
public home.
"""

from rlaif.config.base import Dtype, Strict, UniqueKeyLoader, key_lines
from rlaif.config.data import (
    AggregateConfig,
    PairConfig,
    PromptsConfig,
    SampleConfig,
    ServedModelConfig,
)
from rlaif.config.judge import (
    JUDGE_BACKENDS,
    AdaptiveOrdersConfig,
    AnthropicJudgeConfig,
    BatchConfig,
    CascadeConfig,
    ChecklistsConfig,
    JudgeBackendConfig,
    JudgeConfig,
    OpenAIJudgeConfig,
    Price,
    PromptCacheConfig,
    PythonJudgeConfig,
    TransformersJudgeConfig,
    VllmJudgeConfig,
)
from rlaif.config.loading import apply_override, load_pipeline, resolve_pipeline, validate_pipeline
from rlaif.config.monitor import MonitorConfig, MonitorStopConfig
from rlaif.config.pipeline import PipelineConfig
from rlaif.config.reward import RewardConfig
from rlaif.config.schedule import NightlyConfig, RoundsConfig, StopWhen
from rlaif.config.training import (
    DpoConfig,
    EvaluateConfig,
    GrpoConfig,
    PPOConfig,
    RewardModelConfig,
    TrainConfig,
)

__all__ = [
    "JUDGE_BACKENDS", "AdaptiveOrdersConfig", "AggregateConfig", "AnthropicJudgeConfig",
    "BatchConfig", "CascadeConfig", "ChecklistsConfig", "DpoConfig", "Dtype", "EvaluateConfig",
    "GrpoConfig", "JudgeBackendConfig", "JudgeConfig", "MonitorConfig", "MonitorStopConfig",
    "NightlyConfig", "OpenAIJudgeConfig", "PPOConfig", "PairConfig", "PipelineConfig", "Price",
    "PromptCacheConfig", "PromptsConfig", "PythonJudgeConfig", "RewardConfig", "RewardModelConfig",
    "RoundsConfig", "SampleConfig", "ServedModelConfig", "StopWhen", "Strict", "TrainConfig",
    "TransformersJudgeConfig", "UniqueKeyLoader", "VllmJudgeConfig", "apply_override", "key_lines",
    "load_pipeline", "resolve_pipeline", "validate_pipeline",
]  # fmt: skip
