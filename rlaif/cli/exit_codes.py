"""How the command line ends: its exit codes (cron and systemd read them) and the messages
that go with them."""

from __future__ import annotations

import typer

from rlaif.errors import DiskFullError, RlaifError

# the same for `run`, `nightly` and rounds
EXIT_OK, EXIT_UNEXPECTED, EXIT_BAD_INPUT, EXIT_PARTIAL, EXIT_WAITING, EXIT_LOCKED = range(6)
EXIT_FAILED_JUDGMENTS = 6
EXIT_AUDIT_FAILED = 7
EXIT_DISK_FULL = 8
EXIT_MONITOR_STOPPED = 9
EXIT_INTERRUPTED = 130


def fail(exc: RlaifError) -> None:
    from rlaif.redaction import redact
    from rlaif.run.locking import LockedError

    typer.secho(f"error: {redact(str(exc))}", fg=typer.colors.RED, err=True)
    if isinstance(exc, DiskFullError):
        raise typer.Exit(EXIT_DISK_FULL)
    raise typer.Exit(EXIT_LOCKED if isinstance(exc, LockedError) else EXIT_BAD_INPUT)


def interrupted() -> None:
    typer.secho(
        "interrupted: every judgment that arrived is stored; re-run the same command to "
        "continue (nothing stored is asked again)",
        fg=typer.colors.YELLOW,
        err=True,
    )
    raise typer.Exit(EXIT_INTERRUPTED)


def exit_for(result) -> None:
    """Partial runs get their own exit codes, so a scheduler can tell them from failures."""
    if result.reason == "failures":
        failures = result.manifest["stages"][result.partial]["counts"]["failures"]
        typer.secho(
            f"incomplete: stage {result.partial} has {failures['retryable']} failed judgments "
            f"({', '.join(f'{k}: {v}' for k, v in failures['reasons'].items())}); later stages "
            "wait. Re-run to ask them again (answers already stored are free)",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(EXIT_FAILED_JUDGMENTS)
    if result.waiting:
        typer.secho(
            f"waiting: stage {result.partial} has judgments in provider batches; "
            "re-run later to collect them (nothing is submitted twice)",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(EXIT_WAITING)
    if result.partial:
        typer.secho(
            f"partial: stage {result.partial} stopped at the budget; re-run to continue",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(EXIT_PARTIAL)


def exit_for_monitor(manifest: dict) -> None:
    """Exit 9 when ``train.monitor`` stopped training, naming the rule and what was kept."""
    monitor = manifest.get("stages", {}).get("train", {}).get("counts", {}).get("monitor") or {}
    if monitor.get("stopped"):
        typer.secho(
            f"monitor stopped training at step {monitor['stopped_at']}: {monitor['stopped']}; "
            f"train/model is the policy of step {monitor['kept_step']}, the last it approved",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(EXIT_MONITOR_STOPPED)


def exit_for_unreadable(result) -> None:
    """Exit 3 when the run completed without some pairs: their judgments could not be read,
    and asking again would not change that (a rubric, judge or checklist to fix)."""
    held = result.unreadable_pairs
    if held:
        typer.secho(
            f"partial: {held} pair(s) were held back because their judgments could not be "
            f"read (reasons in {result.run_dir}/logs/run.log); fix the rubric, judge or "
            "checklist, or set aggregate.incomplete: publish",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(EXIT_PARTIAL)
