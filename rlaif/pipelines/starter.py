"""``rlaif init``: a project folder a user owns, made from a shipped pipeline: its YAML pointed
at a prompts file and a rubric copy that live beside it, and the cron line for its nights."""

from __future__ import annotations

import re
import shutil
import sys
from itertools import islice
from pathlib import Path

from rlaif.errors import ConfigError
from rlaif.pipelines import builtin_pipelines
from rlaif.prompts import BUILTIN

STARTER_PROMPTS = 40
"""Prompts copied into the project: the quickstart's 32 and a few spare."""
STARTERS = ("quickstart", "nightly", "ray_cluster")
"""The shipped pipelines a project starts from: a rubric judge over the built-in prompts (the
``rule_*`` ones are experiments with a fixed rule; run them by name)."""


def write_project(dest: Path, template: str = "quickstart") -> list[Path]:
    """Write the starter project into ``dest`` (new or empty) and return the files written."""
    if template not in STARTERS:
        raise ConfigError(f"--from {template}: not a starter pipeline ({', '.join(STARTERS)})")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest}: exists and is not an empty folder; rlaif init writes a new one")
    source = builtin_pipelines()[template]
    text = source.read_text()
    rubric = _one(r"^(\s+rubric:\s*)(\S+)\s*$", text, source)
    pipeline = _replace_once(text, r"^(name:\s*)\S+", rf"\g<1>{dest.resolve().name}")
    pipeline = _replace_once(pipeline, r"^(\s+source:\s*)builtin\b", r"\g<1>prompts.jsonl")
    pipeline = re.sub(r"^(\s+rubric:\s*)\S+", r"\g<1>rubrics/my_rubric.jinja", pipeline, flags=re.M)
    header = (
        f"# Made by `rlaif init` from the shipped `{template}` pipeline. Run it from this folder:\n"
        "#   rlaif run pipeline.yaml\n"
        "# prompts.jsonl holds the prompts (one JSON object a line, a `prompt` key);\n"
        "# rubrics/my_rubric.jinja is the judge's rubric to edit (`rlaif rubrics check` it).\n"
    )
    pipeline = header + re.sub(r"\A(#[^\n]*\n)+", "", pipeline)
    from rlaif.rubrics import find_rubric

    (dest / "rubrics").mkdir(parents=True, exist_ok=True)
    files = {
        dest / "pipeline.yaml": pipeline,
        dest / "rubrics" / "my_rubric.jinja": find_rubric(rubric).read_text(),
        dest / "prompts.jsonl": "".join(islice(BUILTIN["builtin"].open(), STARTER_PROMPTS)),
        dest / "crontab.txt": _cron_line(dest),
    }
    for path, content in files.items():
        path.write_text(content)
    return list(files)


def _cron_line(dest: Path) -> str:
    """The nightly job for ``crontab -e``, with this interpreter's ``rlaif`` and absolute paths."""
    rlaif = shutil.which("rlaif") or f"{Path(sys.executable).parent / 'rlaif'}"
    return (
        "# Each night at 02:15: new prompts only, judged once, resumed if a night is cut short.\n"
        f"15 2 * * * cd {dest.resolve()} && {rlaif} nightly pipeline.yaml --log-json "
        ">> outputs/nightly.jsonl 2>&1\n"
    )


def _one(pattern: str, text: str, source: Path) -> str:
    found = re.findall(pattern, text, flags=re.M)
    if len(found) != 1:
        raise ConfigError(f"{source}: a starter pipeline names exactly one judge rubric")
    return found[0][1]


def _replace_once(text: str, pattern: str, replacement: str) -> str:
    out, count = re.subn(pattern, replacement, text, count=1, flags=re.M)
    if count != 1:
        raise ConfigError(f"a starter pipeline has no line matching {pattern!r}")
    return out
