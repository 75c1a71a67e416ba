"""Everything that can be wrong with a pipeline's inputs, found before any compute or money
is spent: the model reference, dtypes for this machine, each judge (its rubric rendered on
an example, its labels against its tokenizer, a python judge's answer to an example; an API
judge's server, key and model, through its free model list), a served sampler likewise,
calibration files, reference answers the rubrics need, the prompt file, and the judgment
store."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from rlaif.config import PipelineConfig
from rlaif.debias.calibration import panel_calibrations
from rlaif.errors import ConfigError
from rlaif.judges import build_judge
from rlaif.judging.service import escalation_judge
from rlaif.judging.store import JudgmentStore
from rlaif.models.devices import configured_dtypes, resolved_dtypes
from rlaif.models.loading import resolve_model
from rlaif.prompts import load_prompts, split_prompts
from rlaif.rubrics.rubric import check_rendering
from rlaif.sampling.served import reach

log = logging.getLogger("rlaif")


def preflight(cfg: PipelineConfig) -> dict[str, str]:
    """Fail on bad input now; returns each judge's rubric id and file hash."""
    resolve_model(cfg.model, field="model")
    for tracker in cfg.train.report_to:
        if importlib.util.find_spec(tracker) is None:
            raise ConfigError(
                f"train.report_to: {tracker} is not installed here (pip install {tracker})"
            )
    if set(configured_dtypes(cfg).values()) - {"auto", "float32"}:
        resolved_dtypes(cfg)  # e.g. fp16 training asked for on a CPU
    rubrics = {}
    backends = {}
    for spec in cfg.judge.judges:
        backend = backends[spec.name] = build_judge(spec)
        if backend.rubric is not None:
            check_rendering(backend.rubric)
        backend.check()
        provenance = backend.provenance()
        rubrics[provenance["rubric_id"]] = provenance["rubric_hash"]
        rubric = backend.rubric
        if rubric is not None and rubric.needs_reference and not cfg.prompts.reference_column:
            raise ConfigError(
                f"judge '{spec.name}': rubric {rubric.path} compares against a reference "
                "answer, but prompts.reference_column is not set"
            )
        if backend.model == cfg.model:
            log.warning(
                "judge '%s' is the policy model itself (%s): LLM judges favour their own "
                "outputs (self-preference), so its preferences may reward style over quality; "
                "prefer a judge from another model family",
                spec.name,
                cfg.model,
            )
    escalation_judge(cfg.judge, backends)
    if cfg.sample.backend == "openai" and cfg.sample.server is not None:
        reach(cfg.sample.server, cfg.model)
    for backend in backends.values():
        backend.reach()
    panel_calibrations(cfg.judge, cfg.aggregate.judge_weights)
    split_prompts(load_prompts(cfg.prompts), cfg.prompts)
    store = cfg.judgment_store_path()
    if store.exists():  # a damaged store is said now, not after sampling
        JudgmentStore(store).close()
    return rubrics


def judge_named(pipeline: Path | None, name: str):
    """The config of judge ``name`` in ``pipeline``, for commands that check one judge."""
    from rlaif.config import load_pipeline

    if pipeline is None:
        raise ConfigError("--judge needs --pipeline, the YAML that configures it")
    judges = load_pipeline(pipeline).judge.judges
    for spec in judges:
        if spec.name == name:
            return spec
    raise ConfigError(
        f"{pipeline}: no judge named '{name}'; judges are: {', '.join(j.name for j in judges)}"
    )
