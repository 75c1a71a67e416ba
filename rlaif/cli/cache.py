"""``rlaif cache``: the judgment store shared across runs (stats, prune, salvage, recount)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlaif.cli.exit_codes import fail
from rlaif.errors import RlaifError

cache_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="The judgment store shared across runs."
)
StoreOption = Annotated[Path, typer.Option("--store", help="SQLite judgment store")]


@cache_app.command("stats")
def cache_stats(store: StoreOption = Path("outputs/judgments.sqlite")) -> None:
    """Judgments per judge, model and status, with tokens and cost."""
    from rlaif.judging.store import JudgmentStore

    if not store.is_file():
        fail(RlaifError(f"{store}: no judgment store here"))
    with JudgmentStore(store) as db:
        rows = db.stats()
    typer.echo(f"{store}: {sum(r['count'] for r in rows)} judgments")
    for r in rows:
        cost = "" if r["cost_usd"] is None else f" ${r['cost_usd']:.4f}"
        tokens = (
            ""
            if r["input_tokens"] is None
            else f" tokens in={r['input_tokens']} out={r['output_tokens']}"
        )
        typer.echo(
            f"  {r['judge']:<14} {r['backend']:<12} {str(r['model'])[:40]:<40} "
            f"{r['status']:<8} {r['count']:>7}{tokens}{cost}"
        )


@cache_app.command("prune")
def cache_prune(
    store: StoreOption = Path("outputs/judgments.sqlite"),
    older_than_days: Annotated[float | None, typer.Option(help="Only judgments older")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="Only these statuses (repeatable), e.g. error")
    ] = None,
    judge: Annotated[str | None, typer.Option(help="Only this judge's")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Needed to delete everything")] = False,
) -> None:
    """Delete judgments from the store (they will be paid for again if asked again)."""
    from rlaif.judging.store import JudgmentStore

    if older_than_days is None and not status and judge is None and not yes:
        fail(RlaifError("no filter given: pass --yes to delete every judgment"))
    if not store.is_file():
        fail(RlaifError(f"{store}: no judgment store here"))
    with JudgmentStore(store) as db:
        deleted = db.prune(
            older_than_s=None if older_than_days is None else older_than_days * 86400,
            statuses=status,
            judge=judge,
        )
    typer.echo(f"deleted {deleted} judgments from {store}")


@cache_app.command("salvage")
def cache_salvage(store: StoreOption = Path("outputs/judgments.sqlite")) -> None:
    """Recover a damaged store: move it aside and copy every judgment SQLite can still read
    into a fresh one (what could not be read is asked again on the next run)."""
    from rlaif.judging.store import salvage

    if not store.is_file():
        fail(RlaifError(f"{store}: no judgment store here"))
    done = salvage(store)
    lost = (
        "the end of the file is gone, so how many were lost cannot be told"
        if done["lost"] is None
        else f"{done['lost']} lost"
    )
    typer.echo(
        f"{store}: moved the damaged file to {done['moved_to']}; salvaged "
        f"{done['salvaged']} judgments into a fresh store ({lost}; those are asked again on "
        "the next run)"
    )


@cache_app.command("recount")
def cache_recount(store: StoreOption = Path("outputs/judgments.sqlite")) -> None:
    """Accept that the store holds fewer judgments than it once did (restored from an older
    backup, judgments deleted by hand): record what it holds now as what it should hold, so
    runs stop refusing it. The missing judgments are asked (and paid) again when needed."""
    from rlaif.judging.store import JudgmentStore, count_path

    if not store.is_file():
        fail(RlaifError(f"{store}: no judgment store here"))
    with JudgmentStore(store) as db:
        db.record_count(exact=True)
        held = len(db)
    typer.echo(f"{store}: {held} judgments recorded in {count_path(store)}")
