"""Everything that can be wrong with a pipeline's inputs, found before any compute or money
is spent: the model reference, dtypes for this machine, each judge (its rubric rendered on
an example, its labels against its tokenizer, a python judge's answer to an example; an API
judge's server, key and model, through its free model list), a served sampler likewise,
calibration files, reference answers the rubrics need, the prompt file, and the judgment
store."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from rlaif.config import PipelineConfig
from rlaif.debias.calibration import panel_calibrations
from rlaif.errors import ConfigError
from rlaif.judges import build_judge
from rlaif.judging.service import checklist_items_judge, escalation_judge
from rlaif.judging.store import JudgmentStore, missing_judgments
from rlaif.models.devices import configured_dtypes, resolved_dtypes
from rlaif.models.loading import resolve_model
from rlaif.prompts import load_prompts, split_prompts
from rlaif.rubrics.loading import check_rendering
from rlaif.run.stage_table import NAMES
from rlaif.sampling.served import reach

log = logging.getLogger("rlaif")


def preflight(
    cfg: PipelineConfig, run_dir: Path | None = None, stages: list[str] | None = None
) -> dict[str, str]:
    """Fail on bad input now; returns each judge's rubric id and file hash. ``run_dir``: the
    run directory about to be used, whose manifest may record judgments already made.
    ``stages`` (default: all): the stages about to run; the judges, their store and
    calibrations are checked only when one of them is the judge stage or a later one (which
    may run it, or asks the judges itself), so sampling does not wait on a judge it never
    asks."""
    resolve_model(cfg.model, field="model")
    for tracker in cfg.train.report_to:
        if importlib.util.find_spec(tracker) is None:
            raise ConfigError(
                f"train.report_to: {tracker} is not installed here (pip install {tracker})"
            )
    if set(configured_dtypes(cfg).values()) - {"auto", "float32"}:
        resolved_dtypes(cfg)  # e.g. fp16 training asked for on a CPU
    if stages is None or any(NAMES.index(s) >= NAMES.index("train") for s in stages):
        from rlaif.training.trl_args import check_trl

        check_trl(cfg.train)
    if cfg.sample.backend == "openai" and cfg.sample.server is not None:
        reach(cfg.sample.server, cfg.model)
    rubrics = check_judges(cfg) if uses_judges(stages) else {}
    split_prompts(load_prompts(cfg.prompts), cfg.prompts)
    if uses_judges(stages):
        check_store(cfg, run_dir)
    return rubrics


def uses_judges(stages: list[str] | None) -> bool:
    """Whether running ``stages`` (None: all) may ask the judges: the judge stage and every
    stage after it (each may run it as its missing upstream)."""
    return stages is None or any(NAMES.index(s) >= NAMES.index("judge") for s in stages)


def check_judges(cfg: PipelineConfig) -> dict[str, str]:
    """Every judge built, its rubric rendered, checked and reached; each rubric's id and hash."""
    rubrics = {}
    backends = {}
    for spec in cfg.judge.judges:
        backend = backends[spec.name] = build_judge(spec)
        if backend.rubric is not None:
            check_rendering(backend.rubric)
            if backend.mode == "listwise" and cfg.sample.n > len(backend.rubric.labels):
                raise ConfigError(
                    f"judge '{spec.name}': rubric {backend.rubric.path} ranks up to "
                    f"{len(backend.rubric.labels)} answers (one per label), but sample.n is "
                    f"{cfg.sample.n}"
                )
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
    checklist_items_judge(cfg.judge, backends)
    for backend in backends.values():
        backend.reach()
    panel_calibrations(cfg.judge, cfg.aggregate.judge_weights)
    return rubrics


def check_store(cfg: PipelineConfig, run_dir: Path | None = None) -> None:
    """The judgment store opens, every page reads (``quick_check``), it holds as many
    judgments as its sidecar records it held, and it is not empty while a run directory
    (this one, or one under ``output_dir``) records judgments made with it: a store
    truncated, swapped or deleted would otherwise be taken as new and every judgment paid
    again."""
    path = cfg.judgment_store_path()
    if path.is_dir():
        raise ConfigError(
            f"judge.cache: {path} is a folder; name the store's file in it, e.g. "
            f"{path / 'judgments.sqlite'}"
        )
    existed = path.exists()
    if existed:
        with JudgmentStore(path) as store:
            store.check()
    missing = missing_judgments(path)
    if missing:
        raise ConfigError(missing)
    if existed:
        with JudgmentStore(path) as store:
            if len(store) or store.marks():
                return
    made = _judged_with(path, [run_dir, Path(cfg.output_dir)])
    if made:
        where, count = made
        raise ConfigError(
            f"{path}: the judgment store is {'empty' if existed else 'missing'}, but {where} "
            f"records {count} judgments made with it; judging again would pay for every one "
            "again. Restore the store from a backup (or `rlaif cache salvage` a damaged copy "
            "of it), or remove that run directory to start afresh"
        )


def _judged_with(store: Path, roots: list[Path | None]) -> tuple[Path, int] | None:
    """A manifest (in a run directory under ``roots``, up to three levels down) whose judge
    stage recorded judgments in ``store``, with how many."""
    target = str(store.resolve())
    for root in filter(None, roots):
        for pattern in (
            "manifest.json",
            "*/manifest.json",
            "*/*/manifest.json",
            "*/*/*/manifest.json",
        ):
            for manifest in sorted(root.glob(pattern)):
                try:
                    counts = json.loads(manifest.read_text())["stages"]["judge"]["counts"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                # pending (in a provider batch) and skipped (budget) rows were never stored
                stored = sum(counts.get(status) or 0 for status in ("ok", "invalid", "error"))
                if counts.get("store") == target and stored > 0:
                    return manifest, stored
    return None


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
