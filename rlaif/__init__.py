"""rlaif: sample, judge, aggregate debiased preferences, train and evaluate, in stages."""

from rlaif.config import PipelineConfig, load_pipeline
from rlaif.errors import ConfigError, RlaifError
from rlaif.run.runner import Pipeline, RunResult

__all__ = ["ConfigError", "Pipeline", "PipelineConfig", "RlaifError", "RunResult", "load_pipeline"]
__version__ = "0.1.0"
