"""The ``rlaif`` app and its pipeline commands (run, nightly, status, report, export, serve-reward,
judge-eval, judge-audit, init)."""

from __future__ import annotations

import enum
import errno
import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from rlaif.cli.cache import cache_app
from rlaif.cli.checklists import checklists
from rlaif.cli.exit_codes import (
    EXIT_DISK_FULL,
    exit_for,
    exit_for_monitor,
    exit_for_unreadable,
    fail,
    interrupted,
)
from rlaif.cli.judges import judge_audit_cmd, judge_eval_cmd
from rlaif.cli.rubrics import rubrics_app
from rlaif.cli.status import status
from rlaif.errors import DiskFullError, RlaifError


class _RedactedTracebacks(typer.Typer):
    """An unexpected error's traceback is printed plainly, with any API key redacted (a
    provider's error text may echo it); the exit code stays 1. Running out of disk space
    anywhere is one line and exit 8."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise _unexpected() from None
            full = DiskFullError(exc.filename or Path.cwd())
            typer.secho(f"error: {full}", fg=typer.colors.RED, err=True)
            raise SystemExit(EXIT_DISK_FULL) from None
        except Exception:
            raise _unexpected() from None


def _unexpected() -> SystemExit:
    from rlaif.redaction import redact

    sys.stderr.write(redact(traceback.format_exc()) or "")
    return SystemExit(1)


app = _RedactedTracebacks(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",  # a docstring's paragraphs reflow to the terminal's width
    help="Turn an SFT model into an aligned one with AI feedback.",
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"rlaif {version('rlaif')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version"),
    ] = False,
) -> None:
    """Turn an SFT model into an aligned one with AI feedback."""


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="The project folder to create")],
    template: Annotated[
        str,
        typer.Option(
            "--from", help="The shipped pipeline to start from: quickstart, nightly or ray_cluster"
        ),
    ] = "quickstart",
) -> None:
    """Write a starter project: pipeline.yaml, prompts.jsonl, a rubric to edit, the cron line.

    Then `cd FOLDER && rlaif run pipeline.yaml` runs it end to end on the embedded model.
    """
    from rlaif.pipelines.starter import write_project

    try:
        written = write_project(folder, template)
    except RlaifError as exc:
        fail(exc)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"next: cd {folder} && rlaif run pipeline.yaml")


def _setup_logging(json_logs: bool) -> None:
    from rlaif.redaction import redact_handlers
    from rlaif.run.logs import JsonLinesFormatter

    handler = logging.StreamHandler(sys.stderr)
    text = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonLinesFormatter() if json_logs else text)
    redact_handlers([handler])
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for chatty in ("httpx", "httpx2", "httpcore"):  # a line per judge call otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # a log line that cannot be written (a full disk) must not bury the error saying so
    logging.raiseExceptions = False


JsonLogs = Annotated[
    bool, typer.Option("--log-json", help="Log to stderr as JSON lines (as logs/run.jsonl is)")
]


def _stage_list(text: str | None) -> list[str] | None:
    """``sample,,judge`` and stray spaces are forgiven; an empty list is not."""
    if text is None:
        return None
    stages = [s.strip() for s in text.split(",") if s.strip()]
    if not stages:
        raise RlaifError(f"--stages {text!r}: name at least one stage, e.g. --stages sample,judge")
    return stages


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML, or a shipped one by name")],
    run_dir: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (default: `<output_dir>/<name>/<config-hash>`, so a re-run resumes)"
        ),
    ] = None,
    stages: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated stages to run, "
            "e.g. sample,judge; missing upstream outputs are computed too"
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key, e.g. --set sample.n=8 (repeatable)"),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Validate, then print the judge calls, tokens and cost "
            "still to spend; run nothing",
        ),
    ] = False,
    json_logs: JsonLogs = False,
) -> None:
    """Run a pipeline (all stages, or --stages), resuming whatever is already complete; with
    `rounds:` in its config, the on-policy rounds one after another.

    Exit codes: 0 done; 1 anything unexpected; 2 bad input or a judge error that would repeat
    for every request; 3 partial (the judging budget ran out, re-run to continue; or pairs
    were held back because their judgments could not be read, see the log); 4 waiting
    on provider batches (re-run later to collect); 5 another run holds the lock; 6 some
    judgments failed (re-run to ask them again); 8 out of disk space (every answer received
    is stored; free space and re-run); 130 interrupted (Ctrl-C; re-run to continue).
    """
    from rlaif.run.runner import Pipeline

    _setup_logging(json_logs)
    try:
        pipe = Pipeline.from_yaml(pipeline, overrides=set_ or [])
        if dry_run:
            rounds = pipe.config.rounds
            if rounds:  # later rounds sample from policies not trained yet: about the same
                run_dir = Path(run_dir or pipe.default_run_dir()) / "round-1"
                typer.echo(f"round 1 of {rounds.count}; each later round asks about as many")
            _print_estimate(pipe.estimate(run_dir))
            return
        if pipe.config.rounds:
            return _rounds(pipe, run_dir, stages)
        result = pipe.run(stages=_stage_list(stages), run_dir=run_dir)
    except RlaifError as exc:
        fail(exc)
    except KeyboardInterrupt:
        interrupted()
    typer.echo(f"run directory: {result.run_dir}")
    exit_for(result)
    if result.preferences_dir.exists():
        typer.echo(
            f"preference dataset: {result.preferences_dir} "
            "(datasets.load_from_disk; TRL-ready prompt/chosen/rejected)"
        )
    from rlaif.run.run_dir import RunDir

    model_dir = RunDir(result.run_dir).policy
    if model_dir.exists():
        typer.echo(f"trained policy: {model_dir}")
    if result.evaluation:
        e = result.evaluation
        typer.echo(
            f"evaluation: policy vs SFT win rate {e['win_rate']:.3f} "
            f"(95% CI {e['ci_low']:.3f}-{e['ci_high']:.3f}, n={e['n']}; "
            f"{e['wins']} wins, {e['ties']} ties, {e['losses']} losses)"
        )
    exit_for_monitor(result.manifest)
    exit_for_unreadable(result)


def _rounds(pipe, run_dir: Path | None, stages: str | None) -> None:
    """``rounds:`` in the config: the chain of on-policy rounds, then its table."""
    from rlaif.ops.rounds import rounds_table, run_rounds

    if stages is not None:
        raise RlaifError("--stages: a pipeline with rounds runs every stage of each round")
    result = run_rounds(pipe, run_dir)
    typer.echo(f"rounds: {result.run_dir} (chain in rounds.json)")
    for line in rounds_table(result.rounds):
        typer.echo(line)
    if result.stopped:
        typer.echo(f"stopped early: {result.stopped}")
    if result.last is not None:
        exit_for(result.last)
        exit_for_monitor(result.last.manifest)
        exit_for_unreadable(result.last)


@app.command()
def nightly(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML, or a shipped one by name")],
    date: Annotated[
        str | None,
        typer.Option(help="The night to run or resume, YYYY-MM-DD (default: today)"),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key, e.g. --set nightly.train=true"),
    ] = None,
    json_logs: JsonLogs = False,
) -> None:
    """Tonight's run: sample and judge only prompts no earlier night has seen, append the
    preferences to the cumulative versioned dataset, and train on it if nightly.train.

    Exit codes as for `run`: 0 done (or nothing new), 1 unexpected, 2 bad input, 3 partial
    (the nightly budget ran out), 4 waiting on provider batches, 5 another night is running,
    6 some judgments failed (re-run the same --date to ask them again), 8 out of disk space,
    130 interrupted.
    """
    from rlaif.ops.nightly import run_nightly
    from rlaif.run.runner import Pipeline

    _setup_logging(json_logs)
    try:
        result = run_nightly(Pipeline.from_yaml(pipeline, overrides=set_ or []), date)
    except RlaifError as exc:
        fail(exc)
    except KeyboardInterrupt:
        interrupted()
    if result.new_prompts == 0:
        typer.echo(f"night {result.date}: no new prompts; nothing to do")
        return
    typer.echo(f"night {result.date}: {result.new_prompts} new prompts, run {result.night_dir}")
    if result.run is not None:
        exit_for(result.run)
    typer.echo(
        f"cumulative preferences: version {result.version} in "
        f"{result.night_dir.parent / 'preferences' / f'v{result.version:04d}'}"
    )
    evaluation = result.run.evaluation if result.run else None
    if evaluation and evaluation.get("n"):
        typer.echo(
            f"evaluation: policy vs SFT win rate {evaluation['win_rate']:.3f} "
            f"(95% CI {evaluation['ci_low']:.3f}-{evaluation['ci_high']:.3f})"
        )
    if result.run is not None:
        exit_for_monitor(result.run.manifest)
        exit_for_unreadable(result.run)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory")],
    out: Annotated[
        Path | None, typer.Option(help="Folder for index.html and PNGs (default: RUN_DIR/report)")
    ] = None,
) -> None:
    """Write an HTML report of a run (summary, plots, judge and evaluation tables); prints the
    path of its index.html."""
    from rlaif.report import write_report

    try:
        index = write_report(run_dir, out)
    except RlaifError as exc:
        fail(exc)
    typer.echo(str(index))


@app.command()
def export(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory, a rounds run (its last round) or a nightly one")
    ],
    format_: Annotated[str, typer.Option("--format", help="openrlhf, verl or jsonl")],
    out: Annotated[Path, typer.Option(help="Folder for the exported files")],
    reward_url: Annotated[
        str, typer.Option(help="Where the recipes' trainers reach `rlaif serve-reward`")
    ] = "http://127.0.0.1:8765",
) -> None:
    """Write the preferences and prompts in the layout another trainer reads as is (OpenRLHF's
    train_dpo/train_rm/train_ppo_ray, verl's RL parquet) or as JSON lines, with the trainer's
    recipes as scripts beside them; prints the files."""
    from rlaif.ops.export import export as export_run

    try:
        for path in export_run(run_dir, format_, out, reward_url):
            typer.echo(str(path))
    except RlaifError as exc:
        fail(exc)


class OnFailure(str, enum.Enum):
    """What ``serve-reward`` answers for an answer no judge answered for."""

    error = "error"
    null = "null"
    neutral = "neutral"


@app.command("serve-reward")
def serve_reward(
    pipeline: Annotated[Path, typer.Option(help="The pipeline whose judges score answers")],
    reward_model: Annotated[
        Path | None, typer.Option(help="Score with this reward model instead (train/reward_model)")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one)")] = 8765,
    token_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding a token every call must bear"),
    ] = None,
    max_body_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest request body accepted (MB)")
    ] = 16.0,
    on_failure: Annotated[
        OnFailure,
        typer.Option(
            help="An answer no judge answered for (judge failed or down, budget spent): "
            "'error' answers the request 502 (503 for the budget) with the reasons; 'null' "
            "answers 200 with a null reward and the reason; 'neutral' 200 with the scale's "
            "middle (0.5 for a comparison)",
        ),
    ] = OnFailure.error,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Listen on a non-loopback --host without --token-env (anyone who reaches "
            "the server spends the judges' budget)",
        ),
    ] = False,
    json_logs: JsonLogs = False,
) -> None:
    """Serve rewards over HTTP (POST /get_reward, OpenRLHF's remote reward API) from the
    pipeline's judges, through its judgment store and budget, or from a reward model.

    Requests are read concurrently and scored in batches; the response loses the policy's
    end-of-turn marker and other special tokens before it is judged. A host other than a
    loopback address needs --token-env (or --insecure): every call spends the judges'
    budget. Bodies must be JSON (Content-Type: application/json), and a browser page of
    another site is refused."""
    from rlaif.config import load_pipeline
    from rlaif.ops.reward_server import Rewards, RewardServer

    _setup_logging(json_logs)
    try:
        rewards = Rewards(load_pipeline(pipeline), reward_model)
        server = RewardServer(
            rewards,
            host,
            port,
            token_env=token_env,
            max_body_mb=max_body_mb,
            on_failure=on_failure.value,
            insecure=insecure,
        )
    except RlaifError as exc:
        fail(exc)

    def ready(url: str) -> None:
        typer.echo(f"serving rewards at {url}/get_reward", err=True)

    try:
        server.serve(on_ready=ready)
    finally:
        rewards.close()


@app.command("review")
def review(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with judgments")],
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one)")] = 8766,
    reviewer: Annotated[
        str | None, typer.Option(help="Who is labelling (default: the login name)")
    ] = None,
) -> None:
    """A local page to read the judges' verdicts on a run's pairs and label them (A, B, tie
    or flag; keys a, b, t, f). Pairs come in the order a label helps most: order flips, judges
    disagreeing, soft labels near 0.5, the rest. Labels are saved in the judgment store at
    once; `rlaif judge-eval --labels RUN_DIR` measures the judges against them and
    `aggregate.human_labels: override` puts them in the preferences."""
    from rlaif.review.server import ReviewServer

    try:
        server = ReviewServer(run_dir, host, port, reviewer=reviewer)
    except RlaifError as exc:
        fail(exc)

    def ready(_: str) -> None:
        typer.echo(f"review {run_dir} at {server.address}", err=True)

    try:
        server.serve(on_ready=ready)
    finally:
        server.store.close()


def _print_estimate(rows) -> None:
    typer.echo(
        f"{'stage':<9} {'judge':<14} {'backend':<12} {'calls':>7} {'in tokens':>11} "
        f"{'out tokens':>11} {'cost USD':>9}  basis"
    )
    for r in rows:
        cost = "-" if r.cost_usd is None else f"{r.cost_usd:.4f}"
        basis = "exact (pairs exist)" if r.exact else "estimate"
        typer.echo(
            f"{r.stage:<9} {r.judge:<14} {r.backend:<12} {r.calls:>7} "
            f"{r.input_tokens:>11} {r.output_tokens:>11} {cost:>9}  {basis}"
        )
    priced = [r.cost_usd for r in rows if r.cost_usd is not None]
    if priced:
        typer.echo(f"total: ${sum(priced):.4f} (judges without a price table not counted)")
    cached = [r for r in rows if r.cached_input_tokens]
    if cached:
        read = sum(r.cached_input_tokens for r in cached)
        paid = sum(r.cost_usd or 0.0 for r in cached)
        full = sum(r.cost_uncached_usd or 0.0 for r in cached)
        typer.echo(
            f"prompt cache: {read} input tokens read from the providers' caches; "
            f"${paid:.4f} instead of ${full:.4f} for those judges"
        )


app.command()(status)
app.command("checklists")(checklists)
app.command("judge-eval")(judge_eval_cmd)
app.command("judge-audit")(judge_audit_cmd)
app.add_typer(cache_app, name="cache")
app.add_typer(rubrics_app, name="rubrics")
