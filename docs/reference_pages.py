"""The reference pages built from the code itself, so they cannot drift: every pipeline
config key from the pydantic models, every CLI command and option from the CLI, the shipped
rubrics from their front matter. ``gen_reference.py`` writes them at build time; the tests
read them to check that nothing is missing."""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
import typing
from typing import Any

import typer.main
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from rlaif.cli import app
from rlaif.config import PipelineConfig
from rlaif.rubrics import list_rubrics, load_rubric


def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Each field's docstring (the string literal after its annotation), base classes first."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config models a field's type holds (through Optional, list, dict and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        for model in models_in(arg):
            if model not in found:
                found.append(model)
    return found


def type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    return str(annotation).replace("typing.", "").replace("|", "\\|")


def default_of(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{value!r}`" if value not in ("", None) else f"`{value!r}`"


def config_page() -> str:
    out = [
        "# Pipeline config",
        "",
        "Every key of a pipeline YAML, generated from the pydantic models that validate it. "
        "Unknown keys are errors (with the file, line and a suggestion); `--set KEY=VALUE` "
        "overrides any of them from the command line.",
        "",
    ]
    queue: list[tuple[str, type[BaseModel]]] = [("", PipelineConfig)]
    seen: set[tuple[str, type]] = set()
    while queue:
        prefix, model = queue.pop(0)
        if (prefix, model) in seen:
            continue
        seen.add((prefix, model))
        docs = field_docs(model)
        title = f"`{prefix}`" if prefix else "top level"
        out += [f"## {title} ({model.__name__})", ""]
        if model.__doc__ and model is not PipelineConfig:
            out += [" ".join(inspect.cleandoc(model.__doc__).split()), ""]
        out += ["| key | type | default | what it is |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = f"{prefix}.{name}" if prefix else name
            doc = (docs.get(name) or field.description or "").replace("|", "\\|")
            out.append(f"| `{key}` | {type_name(field.annotation)} | {default_of(field)} | {doc} |")
            for sub in models_in(field.annotation):
                many = typing.get_origin(field.annotation) is list or "list[" in str(
                    field.annotation
                )
                queue.append((f"{key}[]" if many else key, sub))
        out.append("")
    return "\n".join(out)


def cli_page() -> str:
    root = typer.main.get_command(app)
    out = ["# Command line", "", "Every `rlaif` command and option, generated from the CLI.", ""]

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            for name in sorted(cmd.commands):
                walk(cmd.commands[name], [*path, name])
            return
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        usage = " ".join(["rlaif", *path, "[OPTIONS]", *(a.name.upper() for a in args)])
        out.extend([f"## `rlaif {' '.join(path)}`", "", f"`{usage}`", ""])
        if cmd.help:
            out.extend([inspect.cleandoc(cmd.help), ""])
        options = [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]
        if options:
            out.extend(["| option | takes | default | what it does |", "|---|---|---|---|"])
            for p in options:
                flags = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
                takes = "flag" if p.is_flag else "value, repeatable" if p.multiple else "value"
                default = "" if p.default in (None, False, ()) else f"`{p.default}`"
                help_text = " ".join((p.help or "").split()).replace("|", "\\|")
                out.append(f"| {flags} | {takes} | {default} | {help_text} |")
            out.append("")

    walk(root, [])
    return "\n".join(out)


def rubrics_page() -> str:
    out = [
        "# Shipped rubrics",
        "",
        "The rubrics inside the package, generated from their front matter. Copy one "
        "(`rlaif init` does) and edit it; `rlaif rubrics check` validates your own.",
        "",
        "| rubric | what it asks | mode | labels | read | variables |",
        "|---|---|---|---|---|---|",
    ]
    for path in list_rubrics():
        r = load_rubric(str(path))
        variables = ", ".join(f"`{v}`" for v in sorted(r.variables))
        labels = ", ".join(f"`{label}`" for label in r.labels)
        about = " ".join(r.description.split()).replace("|", "\\|")
        out.append(f"| `{r.id}` | {about} | {r.mode} | {labels} | {r.read} | {variables} |")
    return "\n".join(out) + "\n"


def recipes_page() -> str:
    from rlaif.integrations.recipes import RECIPES, TRAINERS

    releases = " and ".join(f"{name} {version}" for name, version in TRAINERS.items())
    out = [
        "# Hand-off recipes",
        "",
        f"The scripts `rlaif export` writes beside the data as `<name>.sh`, for {releases}: "
        "paths relative to the script's folder (`$DATA`), the SFT model and the reward "
        "server's address in variables the environment may set; generated from "
        "`rlaif/integrations/recipes.py`, the same list `tests/integration/test_handoffs.py` "
        "parses with each trainer's own argument parser or Hydra config. See "
        "[the hand-off guide](../guides/handoffs.md).",
    ]
    for recipe in RECIPES:
        body = recipe.script("<sft model>", "http://<judge box>:8765")
        body = body.split("set -euo pipefail\n", 1)[1]
        only = " (only when the run trained a reward model)" if recipe.needs_reward_model else ""
        out += ["", f"## `{recipe.name}.sh`: {recipe.title}{only}", "", "```bash", body + "```"]
    return "\n".join(out) + "\n"


PAGES = {
    "reference/config.md": config_page,
    "reference/cli.md": cli_page,
    "reference/rubrics.md": rubrics_page,
    "reference/recipes.md": recipes_page,
}
