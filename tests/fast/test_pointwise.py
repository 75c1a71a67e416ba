"""Pointwise rubrics: a score per answer, read as an expected score from label probabilities
(or from JSON / a pattern), and pairs built from score differences."""

import math

import pytest
from datasets import Dataset

from rlaif.config import AggregateConfig, JudgeConfig, TransformersJudgeConfig
from rlaif.judges.verdicts import from_json, from_label_logprobs, from_pattern
from rlaif.judging.store import JudgmentStore
from rlaif.rubrics import load_rubric
from rlaif.stages import aggregate, judge


@pytest.fixture
def uf():
    return load_rubric("ultrafeedback_helpfulness")


def test_pointwise_rubrics_render_one_answer(uf):
    assert uf.mode == "pointwise" and uf.scores == (1.0, 2.0, 3.0, 4.0, 5.0)
    text = uf.messages("Why?", "Because.", "ignored")[-1]["content"]
    assert "Because." in text and "ignored" not in text
    schema = uf.json_schema()
    assert schema["properties"]["score"] == {"type": "integer", "enum": [1, 2, 3, 4, 5]}


def test_expected_score_from_label_probabilities(uf):
    top = {"4": math.log(0.5), "5": math.log(0.3), " 3": math.log(0.1), "The": math.log(0.1)}
    v = from_label_logprobs(uf, "4", top)
    # 1 and 2 are missing from the top-k: they get the smallest listed probability (0.1)
    probs = {1: 0.1, 2: 0.1, 3: 0.1, 4: 0.5, 5: 0.3}
    expected = sum(k * p for k, p in probs.items()) / sum(probs.values())
    assert v.status == "ok" and v.verdict == "4" and v.p_first is None
    assert v.score == pytest.approx(expected)


def test_score_from_json_and_pattern(uf, tmp_path):
    assert from_json(uf, '{"rationale": "fine", "score": 4}').score == 4.0
    assert from_json(uf, '{"score": "2"}').score == 2.0
    assert from_json(uf, '{"score": 9}').status == "invalid"
    path = tmp_path / "p.jinja"
    path.write_text(
        '---\nmode: pointwise\nread: parse\npattern: "Score: (\\\\d)"\n---\n'
        "{{ prompt }} {{ response }}"
    )
    rubric = load_rubric(str(path))
    assert from_pattern(rubric, "Score: 1 ... no, Score: 3").score == 3.0


def test_pointwise_judge_stage_and_aggregate(tmp_path, tiny_model):
    responses = ["short", "a middling answer", "a long and rambling answer " * 3]
    pairs = Dataset.from_dict(
        {
            "pair_id": ["p:0-1", "p:0-2", "p:1-2"],
            "prompt_id": ["p"] * 3,
            "prompt": ["Q?"] * 3,
            "index_a": [0, 0, 1],
            "index_b": [1, 2, 2],
            "response_a": [responses[0], responses[0], responses[1]],
            "response_b": [responses[1], responses[2], responses[2]],
        }
    )
    cfg = JudgeConfig(
        judges=[
            TransformersJudgeConfig(
                name="uf",
                model=str(tiny_model),
                rubric="ultrafeedback_helpfulness",
                dtype="float32",
            )
        ]
    )
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs, cfg, store=store)
        assert len(store) == 3  # three distinct answers, each scored once
    assert sorted(set(out["order"])) == ["a", "b"] and len(out) == 6
    score = {r["response_a"] if r["order"] == "a" else r["response_b"]: r["score"] for r in out}
    assert all(1.0 <= s <= 5.0 for s in score.values())
    for r in out:
        diff = score[r["response_a"]] - score[r["response_b"]]
        assert r["p_a"] == pytest.approx(0.5 + 0.5 * diff / 4)
    prefs = aggregate(out, AggregateConfig(ties="keep"))
    assert len(prefs) == 3
    for row in prefs:
        assert score[row["chosen"][0]["content"]] >= score[row["rejected"][0]["content"]]
    gap = max(abs(2 * p - 1) for p in prefs["p_chosen"])
    assert len(aggregate(out, AggregateConfig(ties="keep", min_margin=gap + 1e-9))) == 0
