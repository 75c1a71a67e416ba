"""The docs cannot show what does not exist: every pipeline YAML in them validates against the
config models, every `rlaif` command line parses with the CLI itself, and the generated
reference holds every config key (nested ones included), every command and option and every
exit code."""

import re
import shlex
import sys
import typing
from pathlib import Path

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from rlaif.cli import app, exit_codes
from rlaif.config import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
sys.path.insert(0, str(DOCS))
import reference_pages  # noqa: E402


def blocks(language: str) -> list[tuple[str, str]]:
    """(``file:line``, text) of every fenced block in ``language``."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(rf"^```{language}\n(.*?)^```", text, re.S | re.M):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return found


def merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def test_every_pipeline_yaml_in_the_docs_validates():
    checked = 0
    for where, text in blocks("yaml"):
        config = yaml.safe_load(text)
        if not isinstance(config, dict) or not set(config) & set(PipelineConfig.model_fields):
            continue  # not a pipeline (an accelerate config); a misspelt key in one still fails
        try:
            PipelineConfig.model_validate(merge({"name": "docs"}, config))
        except Exception as exc:
            pytest.fail(f"{where}: {exc}")
        checked += 1
    assert checked >= 5


def command_lines() -> list[tuple[str, list[str]]]:
    lines = []
    for where, text in blocks("bash"):
        for line in text.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["rlaif"]:
                lines.append((where, words[1:]))
    return lines


def test_every_command_line_in_the_docs_parses():
    root = typer.main.get_command(app)
    lines = command_lines()
    assert len(lines) >= 20
    for where, words in lines:
        cmd, rest, path = root, list(words), ["rlaif"]
        while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
            name = rest.pop(0)
            assert name in cmd.commands, f"{where}: no command '{' '.join([*path, name])}'"
            cmd, path = cmd.commands[name], [*path, name]
        if hasattr(cmd, "commands"):
            continue  # `rlaif --version`, `rlaif cache --help`
        try:
            cmd.make_context(" ".join(path), rest)
        except Exception as exc:  # typer vendors click: its exceptions are typer's own
            if type(exc).__name__ != "Exit":  # --help
                message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
                pytest.fail(f"{where}: {' '.join(path + words)}: {message}")


def config_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        keys.add(key)
        many = "list[" in str(field.annotation)
        for sub in _models(field.annotation):
            keys |= config_keys(sub, f"{key}[]" if many else key)
    return keys


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def test_the_config_reference_names_every_key():
    page = reference_pages.config_page()
    keys = config_keys(PipelineConfig)
    assert {
        "judge.judges[].price.input_per_mtok",
        "train.ppo.kl_coef",
        "sample.server.base_url",
    } <= keys
    assert [k for k in sorted(keys) if f"| `{k}` |" not in page] == []


def test_the_cli_reference_names_every_command_and_option():
    page = reference_pages.cli_page()
    root = typer.main.get_command(app)

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    commands = list(walk(root, []))
    assert len(commands) >= 15
    for path, cmd in commands:
        assert f"## `rlaif {' '.join(path)}`" in page
        for option in cmd.params:
            if option.param_type_name == "option" and option.name != "help":
                assert f"`{option.opts[0]}`" in page, (path, option.opts)


def test_every_exit_code_is_documented():
    page = (DOCS / "reference" / "exit-codes.md").read_text()
    codes = {v for k, v in vars(exit_codes).items() if k.startswith("EXIT_")}
    assert codes == {int(c) for c in re.findall(r"^\| (\d+) \|", page, re.M)}


def test_the_layout_table_names_every_module_in_its_folders_row():
    page = (DOCS / "contributing.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `rlaif/")]
    package = ROOT / "rlaif"
    modules = [p for p in package.rglob("*.py") if p.name != "__init__.py"]
    assert len(modules) >= 100
    unnamed = []
    for module in modules:
        folder = module.parent.relative_to(ROOT).as_posix()
        row = next((r for r in rows if f"`{folder}/`" in r.split("|")[1]), None)
        if folder == "rlaif":
            row = next(r for r in rows if "`rlaif/*.py`" in r)
        if row is None or f"`{module.name}`" not in row:
            unnamed.append(module.relative_to(ROOT).as_posix())
    assert unnamed == []
