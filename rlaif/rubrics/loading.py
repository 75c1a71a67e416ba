"""Finding and loading rubrics: the search path (``$RLAIF_RUBRICS``, ``./rubrics``, the
shipped ones), the front matter read and checked, and a rendering with example values that
fails before any judge is paid."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from rlaif.errors import ConfigError
from rlaif.rubrics.delimiters import Neutraliser
from rlaif.rubrics.rubric import (
    CHECKLIST_ITEMS_VARIABLES,
    CHECKLIST_MODES,
    CHECKLIST_VARIABLES,
    LISTWISE_LABELS,
    LISTWISE_VARIABLES,
    MODES,
    PAIRWISE_VARIABLES,
    POINTWISE_VARIABLES,
    READ_MODES,
    Rubric,
)
from rlaif.shipped import shipped

_ENV = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False)
"""Parses a template to find the variables it uses (rendering uses each rubric's own)."""

BUILTIN = shipped("rubrics")


def rubric_dirs() -> list[Path]:
    """Where rubric names are looked up: ``$RLAIF_RUBRICS``, ``./rubrics``, the shipped ones."""
    dirs = [Path(p) for p in os.environ.get("RLAIF_RUBRICS", "").split(os.pathsep) if p]
    return [*dirs, Path.cwd() / "rubrics", BUILTIN]


def find_rubric(ref: str) -> Path:
    path = Path(ref).expanduser()
    if path.suffix and path.is_file():
        return path
    for folder in rubric_dirs():
        for candidate in (folder / ref, folder / f"{ref}.jinja"):
            if candidate.is_file():
                return candidate
    known = sorted({p.stem for d in rubric_dirs() if d.is_dir() for p in d.glob("*.jinja")})
    raise ConfigError(
        f"unknown rubric '{ref}': not a file and not a name in "
        f"{', '.join(str(d) for d in rubric_dirs())}; known: {', '.join(known) or 'none'}"
    )


def load_rubric(ref: str) -> Rubric:
    path = find_rubric(ref)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the rubric as UTF-8"
        ) from None
    header, body, body_line = _split_front_matter(text, path)
    name = str(header.get("name") or path.stem)
    mode = header.get("mode", "pairwise")
    if mode not in MODES:
        raise ConfigError(f"{path}: mode '{mode}' is not one of {', '.join(MODES)}")
    labels = _labels(header, mode, path)
    read = header.get("read", "label_probs")
    if read not in READ_MODES:
        raise ConfigError(f"{path}: read '{read}' is not one of {', '.join(READ_MODES)}")
    if read == "label_probs":
        _check_token_labels(labels, path)
    pattern = header.get("pattern")
    if mode == "listwise" and read == "parse":
        raise ConfigError(
            f"{path}: a listwise rubric reads label_probs (the best answer's label) or json "
            "(a ranking)"
        )
    if mode in CHECKLIST_MODES and read != "json":
        raise ConfigError(f"{path}: a {mode} rubric reads json (read: json)")
    if mode in ("listwise", *CHECKLIST_MODES) and header.get("examples"):
        raise ConfigError(f"{path}: examples are for pairwise and pointwise rubrics")
    if read == "parse":
        if not isinstance(pattern, str):
            raise ConfigError(f"{path}: read 'parse' needs a 'pattern' with one group")
        try:
            groups = re.compile(pattern).groups
        except re.error as exc:
            raise ConfigError(f"{path}: pattern is not a valid regex: {exc}") from None
        if groups < 1:
            raise ConfigError(f"{path}: pattern needs a group that captures the label")
    neutralise = header.get("neutralise", True)
    if not isinstance(neutralise, bool):
        raise ConfigError(f"{path}: neutralise must be true or false, got {neutralise!r}")
    principles = header.get("principles", [])
    if not (isinstance(principles, list) and all(isinstance(x, str) and x for x in principles)):
        raise ConfigError(f"{path}: principles must be a list of non-empty strings")
    provided = {
        "pointwise": POINTWISE_VARIABLES,
        "listwise": LISTWISE_VARIABLES,
        "checklist": CHECKLIST_VARIABLES,
        "checklist_items": CHECKLIST_ITEMS_VARIABLES,
    }.get(mode, PAIRWISE_VARIABLES)
    if principles and mode != "pairwise":
        raise ConfigError(f"{path}: principles are for pairwise rubrics")
    if principles:
        provided = (*provided, "principle")
    variables = tuple(header.get("variables", provided))
    # only when declared: a reference needs a reference column; a conversation's earlier
    # turns are a list (empty for a single message) the template loops over
    provided = (*provided, "reference", "conversation")
    unknown = [v for v in variables if v not in provided]
    if unknown:
        raise ConfigError(
            f"{path}: variables {unknown} are not provided in {mode} mode "
            f"(available: {', '.join(provided)})"
        )
    try:
        ast = _ENV.parse(body)
    except TemplateSyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno + body_line - 1}: {exc.message}") from None
    undeclared = meta.find_undeclared_variables(ast) - set(variables)
    if undeclared:
        var = sorted(undeclared)[0]
        line = next(n.lineno for n in ast.find_all(nodes.Name) if n.name == var and n.ctx == "load")
        raise ConfigError(
            f"{path}:{line + body_line - 1}: undefined variable '{var}' "
            f"(this rubric declares: {', '.join(variables)})"
        )
    return Rubric(
        name=name,
        version=str(header.get("version", "1")),
        mode=mode,
        labels=tuple(labels),
        system=header.get("system"),
        variables=variables,
        body=body,
        path=path,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        description=str(header.get("description", "")),
        read=read,
        pattern=pattern,
        rationale=bool(header.get("rationale", True)),
        neutralise=neutralise,
        principles=tuple(principles),
        examples=_examples(header, variables, labels, path),
        _template=SandboxedEnvironment(
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            finalize=Neutraliser.of(body, header.get("system") or "") if neutralise else None,
        ).from_string(body),
    )


def _examples(header: dict, variables: tuple[str, ...], labels: list[str], path: Path):
    examples = header.get("examples", [])
    if not isinstance(examples, list):
        raise ConfigError(f"{path}: examples must be a list of mappings")
    needed = [v for v in variables if v not in ("principle", "conversation")]
    out = []
    for n, example in enumerate(examples, 1):
        if not isinstance(example, dict):
            raise ConfigError(f"{path}: examples[{n}] must be a mapping")
        missing = [k for k in (*needed, "verdict") if k not in example]
        if missing:
            raise ConfigError(f"{path}: examples[{n}] lacks {', '.join(missing)}")
        example = {k: str(v) for k, v in example.items()}
        if example["verdict"] not in labels:
            raise ConfigError(
                f"{path}: examples[{n}].verdict {example['verdict']!r} is not one "
                f"of the labels {labels}"
            )
        out.append(example)
    return tuple(out)


def _labels(header: dict, mode: str, path: Path) -> list[str]:
    if mode in CHECKLIST_MODES:
        if "labels" in header:
            raise ConfigError(f"{path}: a {mode} rubric has no labels (it reads json)")
        return []
    if mode == "pointwise":
        labels = [str(x) for x in header.get("labels", [1, 2, 3, 4, 5])]
        try:
            [float(x) for x in labels]
        except ValueError:
            raise ConfigError(f"{path}: pointwise labels must be numbers, got {labels}") from None
        if len(set(labels)) < 2:
            raise ConfigError(f"{path}: pointwise labels need at least two different scores")
        return labels
    if mode == "listwise":
        labels = header.get("labels", list(LISTWISE_LABELS))
        if not (
            isinstance(labels, list)
            and len(labels) >= 2
            and all(isinstance(x, str) for x in labels)
            and len(set(labels)) == len(labels)
        ):
            raise ConfigError(
                f"{path}: listwise labels must be at least two different strings (one per "
                f"answer shown), got {labels!r}"
            )
        return labels
    labels = header.get("labels", ["A", "B"])
    if not (
        isinstance(labels, list)
        and len(labels) == 2
        and all(isinstance(x, str) for x in labels)
        and labels[0] != labels[1]
    ):
        raise ConfigError(f"{path}: labels must be two different strings, got {labels!r}")
    return labels


def _check_token_labels(labels: list[str], path: Path) -> None:
    """Label probabilities are read off one next token, so each label must be one word with
    no space around it (a tokenizer may still split it: ``rubrics check --judge`` tells)."""
    for label in labels:
        if not label.strip() or label != label.strip() or len(label.split()) != 1:
            raise ConfigError(
                f"{path}: label {label!r} is not a single word without surrounding spaces; "
                "label-probability reading (read: label_probs) needs single-token labels "
                "such as A and B (or read: json / parse for longer ones)"
            )


def _split_front_matter(text: str, path: Path) -> tuple[dict, str, int]:
    """Return (header, body, line number where the body starts)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ConfigError(f"{path}:1: a rubric starts with a '---' front-matter block")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise ConfigError(f"{path}: the front matter opened on line 1 is never closed with '---'")
    try:
        header = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark else 1
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{path}:{line}: invalid front matter: {problem}") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{path}:2: the front matter must be a mapping")
    allowed = {
        "name",
        "version",
        "mode",
        "labels",
        "system",
        "variables",
        "description",
        "read",
        "pattern",
        "rationale",
        "principles",
        "examples",
        "neutralise",
    }
    extra = sorted(set(header) - allowed)
    if extra:
        raise ConfigError(
            f"{path}: unknown front-matter key(s) {', '.join(extra)} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )
    return header, "".join(lines[end + 1 :]), end + 2


EXAMPLE = {
    "prompt": "How do I keep basil fresh for a week?",
    "first": "Trim the stems and keep the basil in a glass of water on the counter, "
    "loosely covered with a bag.",
    "second": "Put it in the fridge.",
    "reference": "Treat it like cut flowers: stems in water at room temperature, loosely "
    "covered; the fridge blackens the leaves.",
    "items": ("Says where to keep the basil", "Answers in at most two sentences"),
}
"""Values for ``rlaif rubrics render --example`` and ``rlaif rubrics check``."""


def list_rubrics() -> list[Path]:
    """Every rubric on the search path; an earlier folder shadows a later one's same name."""
    found: dict[str, Path] = {}
    for folder in rubric_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.jinja")):
                found.setdefault(path.stem, path)
    return sorted(found.values(), key=lambda p: p.stem)


def check_rubric(ref: str) -> Rubric:
    """Load a rubric and render it once with example values: everything that can be wrong
    with it fails here, before any judge is paid."""
    rubric = load_rubric(ref)
    check_rendering(rubric)
    return rubric


def check_rendering(rubric: Rubric) -> None:
    """Render ``rubric`` once with example values; a template error (the sandbox refusing an
    attribute, a missing include, a loop too long) is a ``ConfigError`` naming the file."""
    try:
        rubric.messages(**EXAMPLE)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{rubric.path}: rendering failed: {exc}") from None
