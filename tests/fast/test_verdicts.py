import math
from pathlib import Path

import pytest

from rlaif.judges.verdicts import from_json, from_label_logprobs, from_pattern
from rlaif.rubrics import load_rubric


@pytest.fixture
def json_rubric():
    return load_rubric("helpful_harmless_json")


def test_label_logprobs_normalise_and_merge_variants():
    rubric = load_rubric("helpful_harmless")
    top = {"A": math.log(0.3), " A": math.log(0.1), "B": math.log(0.2), "The": math.log(0.4)}
    v = from_label_logprobs(rubric, "The", top)
    assert v.status == "ok" and v.verdict == "A"
    assert v.p_first == pytest.approx(0.4 / 0.6) and v.label_mass == pytest.approx(0.6)


def test_missing_label_gets_the_smallest_listed_probability():
    rubric = load_rubric("helpful_harmless")
    v = from_label_logprobs(rubric, "A", {"A": math.log(0.5), "x": math.log(0.05)})
    assert v.p_first == pytest.approx(0.5 / 0.55)
    assert from_label_logprobs(rubric, "x", {"x": 0.0}).status == "invalid"
    assert from_label_logprobs(rubric, "", None).status == "invalid"


def test_json_verdicts(json_rubric):
    assert from_json(json_rubric, '{"rationale": "r", "winner": "B"}').p_first == 0.0
    assert from_json(json_rubric, '```json\n{"winner": " A "}\n```').p_first == 1.0
    bad = from_json(json_rubric, '{"winner": "C"}')
    assert bad.status == "invalid" and "gave 'C'" in bad.error
    assert from_json(json_rubric, "A is better").status == "invalid"
    assert from_json(json_rubric, "[1, 2]").status == "invalid"


def test_pattern_takes_the_last_match():
    rubric = load_rubric("helpful_harmless_cot")
    v = from_pattern(rubric, "If I had to say Winner: A... but no.\n**Winner: B**")
    assert v.verdict == "B" and v.p_first == 0.0
    assert from_pattern(rubric, "no decision").status == "invalid"


def test_rationale_can_be_left_out(tmp_path: Path):
    path = tmp_path / "r.jinja"
    path.write_text(
        "---\nread: json\nrationale: false\n---\n{{ prompt }}{{ response_a }}{{ response_b }}"
    )
    schema = load_rubric(str(path)).json_schema()
    assert list(schema["properties"]) == ["winner"] and schema["required"] == ["winner"]
    assert list(load_rubric("helpful_harmless_json").json_schema()["properties"]) == [
        "rationale",
        "winner",
    ]
