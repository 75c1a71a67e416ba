"""``--help`` shows each command's docstring as paragraphs reflowed to the terminal, never with
the source's line breaks mid-sentence."""

import inspect

import pytest
from typer.testing import CliRunner

from rlaif.cli import app


def commands() -> list[tuple[list[str], str]]:
    """Every command's words on the command line and its docstring."""
    found = []
    for info in app.registered_commands:
        found.append(([info.name or info.callback.__name__], info.callback.__doc__ or ""))
    for group in app.registered_groups:
        for info in group.typer_instance.registered_commands:
            found.append(([group.name, info.name or info.callback.__name__], info.callback.__doc__))
    return found


@pytest.mark.parametrize("words,doc", commands(), ids=[" ".join(w) for w, _ in commands()])
def test_help_paragraphs_are_whole_lines(words, doc):
    shown = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "1000"}).output
    lines = [line.strip(" │") for line in shown.splitlines()]
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        whole = " ".join(paragraph.split()).replace("`", "")
        assert whole in lines, f"{' '.join(words)}: {whole!r} not on one line"


def test_a_port_out_of_range_is_refused_before_anything_starts():
    args = ["serve-reward", "--pipeline", "x.yaml", "--port", "99999"]
    done = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert done.exit_code == 2
    assert "Invalid value for '--port': Input should be less than or equal to 65535" in done.output
