"""``rlaif rubrics``: list, show, render and check rubric templates before any judge is paid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlaif.cli.exit_codes import fail
from rlaif.errors import RlaifError

rubrics_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Rubric templates: list, show, render, check.",
)


@rubrics_app.command("list")
def rubrics_list() -> None:
    """Every rubric found in $RLAIF_RUBRICS, ./rubrics and the shipped ones."""
    from rlaif.rubrics import list_rubrics, load_rubric

    for path in list_rubrics():
        try:
            r = load_rubric(str(path))
            typer.echo(f"{r.name:<24} v{r.version:<4} {r.mode:<9} {r.read:<12} {r.description}")
        except RlaifError as exc:
            typer.secho(f"{path.stem:<24} INVALID  {exc}", fg=typer.colors.RED)


@rubrics_app.command("show")
def rubrics_show(name: Annotated[str, typer.Argument(help="A rubric name or path")]) -> None:
    """A rubric's file, hash and settings, and its template."""
    from rlaif.rubrics import load_rubric

    try:
        r = load_rubric(name)
    except RlaifError as exc:
        fail(exc)
    typer.echo(
        f"{r.id}  {r.path}\nsha256 {r.sha256}\nmode {r.mode}, read {r.read}, "
        f"labels {list(r.labels)}, variables {list(r.variables)}"
    )
    if r.pattern:
        typer.echo(f"pattern {r.pattern}")
    if r.principles:
        typer.echo("principles:\n" + "\n".join(f"  - {p}" for p in r.principles))
    typer.echo(f"system: {r.system or '(none)'}\n---\n{r.body.strip()}")


@rubrics_app.command("render")
def rubrics_render(
    name: Annotated[str, typer.Argument(help="A rubric name or path")],
    example: Annotated[bool, typer.Option("--example", help="Use a built-in example")] = False,
    prompt: Annotated[str | None, typer.Option(help="The user request")] = None,
    response_a: Annotated[str | None, typer.Option("--a", help="First response")] = None,
    response_b: Annotated[str | None, typer.Option("--b", help="Second response")] = None,
    more: Annotated[
        list[str] | None,
        typer.Option("--more", help="A further response, for a listwise rubric (repeatable)"),
    ] = None,
    item: Annotated[
        list[str] | None,
        typer.Option(
            "--item", help="A checklist requirement, for a checklist_items rubric (repeatable)"
        ),
    ] = None,
) -> None:
    """Print the chat messages a judge would receive."""
    from rlaif.rubrics import EXAMPLE, load_rubric

    given = {"prompt": prompt, "first": response_a, "second": response_b}
    if not example and None in given.values():
        fail(RlaifError("pass --example, or all of --prompt, --a and --b"))
    values = {k: v if v is not None else EXAMPLE[k] for k, v in given.items()}
    try:
        rubric = load_rubric(name)
        if more and rubric.mode != "listwise":
            raise RlaifError(f"--more: rubric {rubric.path} is {rubric.mode}, not listwise")
        if item and rubric.mode != "checklist_items":
            raise RlaifError(f"--item: rubric {rubric.path} is {rubric.mode}, not checklist_items")
        shown = (values["first"], values["second"], *(more or ()))
        messages = rubric.messages(
            **values,
            reference=EXAMPLE["reference"],
            responses=shown,
            items=tuple(item or EXAMPLE["items"]),
        )
    except RlaifError as exc:
        fail(exc)
    for message in messages:
        typer.echo(f"[{message['role']}]\n{message['content']}\n")


@rubrics_app.command("check")
def rubrics_check(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Rubric names or paths (default: the judge's own)")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="A judge of --pipeline: also check the rubric against it (labels must be "
            "single tokens of its tokenizer)"
        ),
    ] = None,
    pipeline: Annotated[Path | None, typer.Option(help="Pipeline YAML that names --judge")] = None,
):
    """Validate rubrics (front matter, template, variables, a test render); exit 2 on error."""
    from rlaif.judges import build_judge
    from rlaif.rubrics import check_rubric
    from rlaif.run.preflight import judge_named

    spec = None
    try:
        if judge is not None:
            spec = judge_named(pipeline, judge)
        refs = paths or ([getattr(spec, "rubric", None)] if spec else [])
        if not refs or None in refs:
            raise RlaifError("name a rubric to check, or --pipeline and --judge of a rubric judge")
    except RlaifError as exc:
        fail(exc)
    failed = False
    for ref in refs:
        try:
            r = check_rubric(ref)
            if spec is not None:
                build_judge(spec.model_copy(update={"rubric": ref})).check()
            typer.echo(f"ok  {r.id}  {r.path}{f'  (judge {judge})' if spec else ''}")
            exposed = r.unguarded_variables()
            if exposed:
                typer.secho(
                    f"warning: {r.path}: {', '.join(exposed)} not inside a <tag>...</tag> "
                    "block of its own, so a response can pass for the rubric's instructions; "
                    "wrap each in a tag (delimiters the template uses are escaped in the data)",
                    fg=typer.colors.YELLOW,
                    err=True,
                )
        except RlaifError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            failed = True
    if failed:
        raise typer.Exit(2)
