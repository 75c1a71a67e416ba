"""``rlaif status``: where a run, a chain of rounds or a nightly folder stands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rlaif.cli.exit_codes import fail
from rlaif.errors import RlaifError


def status(
    run_dir: Annotated[Path, typer.Argument(help="A run directory, or a nightly directory")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest")] = False,
) -> None:
    """Show each stage's status, progress, counts, cost and timing for a run; for a nightly
    directory (`<output_dir>/<name>/nightly`), one line per night; for on-policy rounds, the
    finished rounds' table."""
    from rlaif.run.run_dir import RunDir, run_cost

    folder = RunDir(run_dir)
    if (run_dir / "ledger.sqlite").exists() and not folder.has_manifest():
        _nights_status(run_dir)
        return
    from rlaif.ops.rounds import rounds_table
    from rlaif.run.run_dir import read_chain

    if (chain := read_chain(run_dir)) is not None:
        typer.echo("\n".join([f"rounds in {run_dir}", *rounds_table(chain["rounds"])]))
        if chain["stopped"]:
            typer.echo(f"stopped early: {chain['stopped']}")
        return
    try:
        manifest = folder.read_manifest()
    except RlaifError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    from rlaif.run.locking import is_held
    from rlaif.run.stage_table import NAMES

    alive = is_held(folder.lock_path)
    typer.echo(f"{manifest['pipeline']}  {run_dir}  (config {manifest['config_hash'][:12]})")
    for name in NAMES:
        entry = manifest["stages"].get(name, {})
        state = entry.get("status", "not run")
        if state == "running" and not alive:
            state = "interrupted"  # its process died; the next run resumes it
        secs = f"{entry['seconds']:.1f}s" if "seconds" in entry else ""
        shown = {k: v for k, v in (entry.get("counts") or {}).items() if k != "monitor"}
        counts = " ".join(f"{k}={v}" for k, v in shown.items())
        error = entry.get("error", "")
        typer.echo(f"  {name:<10} {state:<11} {secs:>8}  {counts}{error}")
        if name == "train" and (line := _monitor_line(folder, entry)):
            typer.echo(f"      {line}")
        if state in ("running", "interrupted") and entry.get("progress"):
            p = entry["progress"]
            total = p["total"] or "?"
            rate = f", {p['rate']:.2f} {p['unit']}/s" if p.get("rate") else ""
            detail = f", {p['detail']}" if p.get("detail") else ""
            typer.echo(
                f"      {p['task']}: {p['done']}/{total} {p['unit']}{rate}{detail} "
                f"(as of {p['updated_at']})"
            )
    typer.echo(f"  judge cost: ${run_cost(manifest) or 0.0:.4f}")
    if manifest.get("evaluation"):
        e = manifest["evaluation"]
        typer.echo(f"  win rate {e['win_rate']:.3f} (95% CI {e['ci_low']:.3f}-{e['ci_high']:.3f})")


def _monitor_line(folder, entry: dict) -> str | None:
    """``train.monitor``'s newest check (while training, from beside the checkpoints) and,
    when it stopped training, why."""
    from rlaif.report.run_data import monitor_checks

    checks = monitor_checks(folder.path)
    if checks is None:
        live = sorted(
            (folder.path / "checkpoints").glob("*/monitor/monitor.jsonl"),
            key=lambda p: p.stat().st_mtime,
        )
        checks = [json.loads(x) for x in live[-1].read_text().splitlines() if x] if live else []
    if not checks:
        return None
    last = checks[-1]
    measures = ", ".join(
        f"{k.replace('_', ' ')} {last[k]:.3g}"
        for k in ("reward", "win_rate", "kl", "length_ratio", "repetition", "refusal", "attacks")
        if last.get(k) is not None
    )
    line = f"monitor: {len(checks)} checks; step {last['step']}: {measures}"
    summary = (entry.get("counts") or {}).get("monitor") or {}
    if summary.get("stopped"):
        line += (
            f"; stopped at step {summary['stopped_at']} ({summary['stopped']}), "
            f"kept step {summary['kept_step']}"
        )
    return line


def _nights_status(root: Path) -> None:
    from rlaif.run.locking import is_held
    from rlaif.run.run_dir import RunDir, run_cost

    running = " (a night is running now)" if is_held(root / ".lock") else ""
    typer.echo(f"{root}{running}")
    typer.echo(f"  {'night':<11} {'state':<11} {'new':>5} {'version':>7} {'rows':>6} {'cost':>9}")
    for night in sorted(p for p in root.iterdir() if RunDir(p).has_manifest()):
        manifest = RunDir(night).read_manifest()
        info = manifest.get("nightly", {})
        states = [s.get("status") for s in manifest["stages"].values()]
        state = next((s for s in ("failed", "running", "partial") if s in states), "completed")
        if "version" not in info and state == "completed":
            state = "unpublished"
        typer.echo(
            f"  {night.name:<11} {state:<11} {info.get('new_prompts', '-'):>5} "
            f"{info.get('version', '-'):>7} {info.get('cumulative_rows', '-'):>6} "
            f"{run_cost(manifest) or 0.0:>9.4f}"
        )
