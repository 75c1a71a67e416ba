"""``rlaif`` command line: the same entrypoints as the Python API."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from rlaif.errors import RlaifError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Turn an SFT model into an aligned one with AI feedback.",
)


def _fail(exc: RlaifError) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML, e.g. pipelines/quickstart.yaml")],
    run_dir: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (default: <output_dir>/<name>/<config-hash>, so a re-run resumes)"
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
) -> None:
    """Run a pipeline (all stages, or --stages), resuming whatever is already complete."""
    from rlaif.pipeline import Pipeline

    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        pipe = Pipeline.from_yaml(pipeline, overrides=set_ or [])
        result = pipe.run(stages=stages.split(",") if stages else None, run_dir=run_dir)
    except RlaifError as exc:
        _fail(exc)
    typer.echo(f"run directory: {result.run_dir}")
    if result.preferences_dir.exists():
        typer.echo(
            f"preference dataset: {result.preferences_dir} "
            "(datasets.load_from_disk; TRL-ready prompt/chosen/rejected)"
        )
    model_dir = result.run_dir / "train" / "model"
    if model_dir.exists():
        typer.echo(f"trained policy: {model_dir}")
    if result.evaluation:
        e = result.evaluation
        typer.echo(
            f"evaluation: policy vs SFT win rate {e['win_rate']:.3f} "
            f"(95% CI {e['ci_low']:.3f}-{e['ci_high']:.3f}, n={e['n']}; "
            f"{e['wins']} wins, {e['ties']} ties, {e['losses']} losses)"
        )


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run directory")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest")] = False,
) -> None:
    """Show each stage's status, counts and timing for a run."""
    from rlaif.pipeline import read_manifest

    try:
        manifest = read_manifest(run_dir)
    except RlaifError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    from rlaif.config import STAGES

    typer.echo(f"{manifest['pipeline']}  {run_dir}  (config {manifest['config_hash'][:12]})")
    for name in STAGES:
        entry = manifest["stages"].get(name, {})
        state = entry.get("status", "pending")
        secs = f"{entry['seconds']:.1f}s" if "seconds" in entry else ""
        counts = " ".join(f"{k}={v}" for k, v in (entry.get("counts") or {}).items())
        error = entry.get("error", "")
        typer.echo(f"  {name:<10} {state:<10} {secs:>8}  {counts}{error}")
    if manifest.get("evaluation"):
        e = manifest["evaluation"]
        typer.echo(f"  win rate {e['win_rate']:.3f} (95% CI {e['ci_low']:.3f}-{e['ci_high']:.3f})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
