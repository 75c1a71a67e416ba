"""Reading a pipeline: its YAML (a path, or a shipped pipeline's name), ``--set`` overrides,
and validation errors that name the file, line and field."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rlaif.config.base import UniqueKeyLoader, key_lines
from rlaif.config.judge import JUDGE_BACKENDS, UNUSABLE
from rlaif.config.pipeline import PipelineConfig
from rlaif.errors import ConfigError
from rlaif.pipelines import builtin_pipelines


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a pipeline YAML (a path, or a shipped pipeline's name such as ``quickstart``),
    apply ``key=value`` overrides and validate it."""
    path = resolve_pipeline(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pipeline file ({exc.strerror})") from exc
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    for item in overrides or []:
        apply_override(data, item)
    return validate_pipeline(data, source=str(path), lines=key_lines(text))


def resolve_pipeline(ref: str | Path) -> Path:
    """A pipeline file's path: ``ref`` itself, or the shipped pipeline of that name."""
    path = Path(ref)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    shipped = builtin_pipelines()
    if str(ref) in shipped:
        return shipped[str(ref)]
    raise ConfigError(
        f"{ref}: no such pipeline file, and not the name of a shipped pipeline "
        f"({', '.join(shipped)})"
    )


def validate_pipeline(
    data: dict[str, Any], *, source: str = "<config>", lines: dict[tuple, int] | None = None
) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, lines or {})) from None


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``3``, ``[1]``)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. sample.n=8")
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is not a mapping")
        node = node.setdefault(part, {})
    last = parts[-1]
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({problem})") from exc
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {item!r}: cannot set '{last}' here")


def _format_errors(exc: ValidationError, source: str, lines: dict[tuple, int]) -> str:
    messages = []
    for err in exc.errors():
        loc = _drop_union_tags(tuple(err["loc"]))
        suggestion = _suggestion(tuple(err["loc"])) if err["type"] == "extra_forbidden" else ""
        dotted = ".".join(str(p) for p in loc) or "<top level>"
        where = source
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                where = f"{source}:{lines[loc[:n]]}"
                break
        msg = err["msg"].removeprefix("Value error, ")  # pydantic's, for a validator's message
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + suggestion
        messages.append(f"{where}: {dotted}: {msg}")
    return "invalid pipeline config\n  " + "\n  ".join(messages)


def _drop_union_tags(loc: tuple) -> tuple:
    """Pydantic puts the discriminator value in the error path (``judges.0.python.x``); users
    never wrote it, so drop it."""
    return tuple(
        p
        for i, p in enumerate(loc)
        if not ((p in JUDGE_BACKENDS or p == UNUSABLE) and i > 0 and isinstance(loc[i - 1], int))
    )


def _suggestion(loc: tuple) -> str:
    model: type[BaseModel] | None = PipelineConfig
    for i, part in enumerate(loc[:-1]):
        if isinstance(part, int):
            continue
        if part in JUDGE_BACKENDS and i > 0 and isinstance(loc[i - 1], int):
            model = JUDGE_BACKENDS[part][0]
            continue
        if model is None:
            continue
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
