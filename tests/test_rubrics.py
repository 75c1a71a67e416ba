from pathlib import Path

import pytest

from rlaif.errors import ConfigError
from rlaif.rubrics import load_rubric

HEADER = "---\nname: t\nversion: 2\nlabels: [A, B]\nsystem: judge well\n---\n"


def rubric(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "t.jinja"
    path.write_text(header + body)
    return path


def test_shipped_rubrics_load_and_render(repo_root):
    paths = sorted((repo_root / "rubrics").glob("*.jinja"))
    assert len(paths) >= 2
    for path in paths:
        r = load_rubric(str(path))
        messages = r.render(prompt="P?", response_a="first answer", response_b="second answer")
        text = messages[-1]["content"]
        assert messages[-1]["role"] == "user"
        assert text.index("first answer") < text.index("second answer")
        assert len(r.sha256) == 64


def test_rubric_by_name_and_id(repo_root):
    r = load_rubric("helpful_harmless")
    assert r.id == "helpful_harmless@1"
    assert r.path == repo_root / "rubrics" / "helpful_harmless.jinja"


def test_undefined_variable_names_file_and_line(tmp_path):
    path = rubric(tmp_path, "Request: {{ prompt }}\nA: {{ response_a }}\nB: {{ respnse_b }}\n")
    with pytest.raises(ConfigError) as err:
        load_rubric(str(path))
    # front matter is 6 lines, so the body's third line is line 9 of the file
    assert f"{path}:9: undefined variable 'respnse_b'" in str(err.value)


def test_syntax_error_names_line(tmp_path):
    path = rubric(tmp_path, "{{ prompt }}\n{% if response_a %}\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: Unexpected end of template"):
        load_rubric(str(path))


def test_template_code_in_responses_stays_literal(tmp_path):
    path = rubric(tmp_path, "{{ prompt }}|{{ response_a }}|{{ response_b }}")
    r = load_rubric(str(path))
    text = r.render(prompt="{{ 7*7 }}", response_a="{% raw %}", response_b="{{ ''.__class__ }}")
    assert text[-1]["content"] == "{{ 7*7 }}|{% raw %}|{{ ''.__class__ }}"
    assert text[0] == {"role": "system", "content": "judge well"}


def test_sandbox_blocks_unsafe_template(tmp_path):
    path = rubric(tmp_path, "{{ prompt.__class__.__mro__[1].__subclasses__() }}")
    r = load_rubric(str(path))
    with pytest.raises(Exception, match="unsafe|not safely|access"):
        r.render(prompt="x", response_a="a", response_b="b")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("name: t\n", "starts with a '---'"),
        ("---\nname: t\n", "never closed"),
        ("---\nname: t\ncolour: red\n---\n", "unknown front-matter key"),
        ("---\nlabels: [A]\n---\n", "labels must be two different strings"),
        ("---\nmode: pointwise\n---\n", "mode 'pointwise' is not supported"),
        ("---\nvariables: [prompt, reference]\n---\n", "not provided in pairwise mode"),
        ("---\nname: [unclosed\n---\n", "t.jinja:2: invalid front matter"),
    ],
)
def test_bad_front_matter(tmp_path, header, message):
    path = rubric(tmp_path, "{{ prompt }}", header=header)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_rubric(str(path))


def test_unknown_rubric_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown rubric 'nope'.*helpful_harmless"):
        load_rubric("nope")
