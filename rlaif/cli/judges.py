"""``rlaif judge-eval`` and ``rlaif judge-audit``: measuring the judges themselves, against
people's labels and against attacks."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from rlaif.cli.exit_codes import EXIT_AUDIT_FAILED, fail
from rlaif.errors import ConfigError, RlaifError


def judge_eval_cmd(
    dataset: Annotated[
        Path | None,
        typer.Argument(
            help="Labelled pairs: prompt/chosen/rejected, or HH-RLHF dialogues (.jsonl, "
            ".jsonl.gz, ...)"
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="A run directory whose pairs people labelled in `rlaif review`"),
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="Pipeline YAML whose judges to evaluate (default for a run: its own)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Judge a random sample of N pairs")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key")] = None,
    seed: int = 0,
    calibrate: Annotated[bool, typer.Option(help="Fit each judge's calibration")] = False,
    method: Annotated[str, typer.Option(help="temperature or isotonic")] = "temperature",
    holdout: Annotated[float, typer.Option(help="Share of pairs kept to report on")] = 0.5,
    out: Annotated[Path | None, typer.Option(help="Calibration files' folder")] = None,
) -> None:
    """Agreement of the pipeline's judges with human labels, per debiasing step; with
    --calibrate, each judge's calibration fitted on part of the pairs, reported on the rest.

    The labels come from a labelled dataset, or with --labels RUN_DIR from what people said
    in `rlaif review` of that run's pairs (A or B; ties and flags left out), judged by the
    run's own judges unless --pipeline names others."""
    from rlaif.config import load_pipeline, validate_pipeline
    from rlaif.judging.judge_eval import describe, judge_eval, load_labelled
    from rlaif.judging.store import JudgmentStore
    from rlaif.review.queue import human_preferences
    from rlaif.run.run_dir import RunDir

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        if (dataset is None) == (labels is None):
            raise ConfigError(
                "give a labelled dataset (judge-eval FILE --pipeline P.yaml) or a reviewed run "
                "(judge-eval --labels RUN_DIR), one of the two"
            )
        if dataset is not None and RunDir(dataset).has_manifest():
            raise ConfigError(
                f"{dataset} is a run directory: its people's labels are read with "
                f"`rlaif judge-eval --labels {dataset}`"
            )
        if labels is not None and not RunDir(labels).has_manifest():
            raise ConfigError(f"--labels {labels}: not a run directory (no manifest)")
        run = RunDir(labels) if labels is not None else None
        if pipeline is not None:
            cfg = load_pipeline(pipeline, set_ or [])
        elif run is not None:
            cfg = validate_pipeline(run.read_manifest()["config"], source=str(run.manifest_path))
        else:
            raise ConfigError("--pipeline: which pipeline's judges to evaluate")
        labelled = (
            load_labelled(dataset, limit=limit, seed=seed)
            if labels is None
            else human_preferences(labels)
        )
        with JudgmentStore(cfg.judgment_store_path()) as store:
            result = judge_eval(
                labelled, cfg.judge, store, seed, method if calibrate else None, holdout
            )
    except RlaifError as exc:
        fail(exc)
    folder = out or Path(cfg.output_dir) / cfg.name / "calibration"
    for line in describe(result, cfg.judge.judges, folder):
        typer.echo(line)
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "fits"}))


def judge_audit_cmd(
    pipeline: Annotated[Path, typer.Option(help="Pipeline YAML whose judges to attack")],
    out: Annotated[Path | None, typer.Option(help="Where judge_audit.json goes")] = None,
    max_attack_rate: Annotated[float, typer.Option(help="Exit 7 above this rate")] = 0.25,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key")] = None,
) -> None:
    """Attack each judge (forged delimiters, verdict claims, null model, ...); exit 7 when a
    case's attack success rate passes --max-attack-rate.

    Answers are kept in the pipeline's judgment store and paid under `judge.max_cost_usd`,
    so a second audit of the same judges pays nothing."""
    from rlaif.config import load_pipeline
    from rlaif.judges import Budget
    from rlaif.judging.audit import audit_judge, failing, table, write_audit
    from rlaif.judging.store import JudgmentStore

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        cfg = load_pipeline(pipeline, set_ or [])
        budget = Budget(cfg.judge.max_cost_usd)
        with JudgmentStore(cfg.judgment_store_path()) as store:
            results = [
                r
                for spec in cfg.judge.judges
                for r in audit_judge(
                    spec, store=store, budget=budget, max_failures=cfg.judge.max_failures
                )
            ]
    except (RlaifError, ValueError) as exc:
        fail(exc if isinstance(exc, RlaifError) else RlaifError(str(exc)))
    typer.echo(table(results, max_attack_rate))
    typer.echo(
        f"wrote {write_audit(results, out or Path(cfg.output_dir) / cfg.name, max_attack_rate)}"
    )
    if failing(results, max_attack_rate):
        raise typer.Exit(EXIT_AUDIT_FAILED)
