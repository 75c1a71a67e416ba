"""``rlaif checklists``: read the checklists a run's checklist judges wrote, and replace them
with a person's."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rlaif.cli.exit_codes import fail
from rlaif.errors import ConfigError, RlaifError


def checklists(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with pairs")],
    out: Annotated[
        Path | None, typer.Option(help="Write the checklists here (JSON lines) instead of stdout")
    ] = None,
    set_: Annotated[
        Path | None,
        typer.Option("--set", help="Store these checklists (JSON lines with key and items)"),
    ] = None,
    reviewer: Annotated[
        str | None, typer.Option(help="Who edited them (default: the login name)")
    ] = None,
) -> None:
    """The checklist each prompt of a run was scored against, one JSON line per prompt and
    checklist judge: its key, prompt, items (requirement, weight, check, value), whether a
    person edited it, and why there is none where there is none. Edit the lines you want to
    change and give the file back with --set: the edits are stored beside the judge's own,
    and the next `rlaif run` judges those prompts' answers again against them."""
    from rlaif.config import validate_pipeline
    from rlaif.judging.checklists import edit_checklists, run_checklists
    from rlaif.judging.schema import pair_columns
    from rlaif.judging.store import JudgmentStore
    from rlaif.run.datasets_io import load_dir
    from rlaif.run.run_dir import RunDir

    try:
        run = RunDir(run_dir)
        if not run.has_manifest():
            raise ConfigError(f"{run_dir}: not a run directory (no manifest)")
        cfg = validate_pipeline(run.read_manifest()["config"], source=str(run.manifest_path))
        if not run.output("pair").exists():
            raise ConfigError(f"{run_dir}: no pairs yet; run the pipeline through its pair stage")
        pairs = load_dir(run.output("pair"))
        records = pairs.select_columns(pair_columns(pairs.column_names)).to_list()
        with JudgmentStore(cfg.judgment_store_path()) as store:
            found = run_checklists(cfg.judge, records, store)
            if not found:
                raise ConfigError(f"{run_dir}: the run has no checklist judge")
            if set_ is not None:
                known = {c.key for _, c in found}
                who = reviewer or getpass.getuser()
                stored = edit_checklists(
                    _text_lines(set_),
                    str(set_),
                    known,
                    store,
                    reviewer=who,
                    min_items=cfg.judge.checklists.min_items,
                    items_judge=cfg.judge.checklists.items_judge is not None,
                )
                typer.echo(
                    f"{stored} checklist(s) stored; `rlaif run` judges their prompts' answers "
                    "again against them",
                    err=True,
                )
                return
    except (RlaifError, OSError) as exc:
        fail(exc if isinstance(exc, RlaifError) else ConfigError(str(exc)))
    lines = [
        json.dumps(
            {
                "judge": judge,
                "key": c.key,
                "prompt": c.prompt,
                "items": json.loads(c.text) if c.text else None,
                "edited": c.edited,
                **({"error": c.error} if c.error else {}),
            }
        )
        for judge, c in found
    ]
    if out is None:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
    else:
        out.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        typer.echo(f"{len(lines)} checklist(s) written to {out}", err=True)


def _text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 file; a byte that is not names its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
