import judges_for_tests as jt
import pytest
from datasets import Dataset

from rlaif.config import JudgeConfig, PythonJudgeConfig, TransformersJudgeConfig
from rlaif.judging.store import JudgmentStore
from rlaif.stages import judge


def pairs(n=3, prompt="question"):
    return Dataset.from_dict(
        {
            "pair_id": [f"p{i}:0-1" for i in range(n)],
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [f"{prompt} {i}" for i in range(n)],
            "index_a": [0] * n,
            "index_b": [1] * n,
            "response_a": ["a fairly long answer " * (i + 1) for i in range(n)],
            "response_b": ["short"] * n,
        }
    )


def python_cfg(fn, **kw):
    return JudgeConfig(judges=[PythonJudgeConfig(callable=f"judges_for_tests:{fn}")], **kw)


def test_both_orders_mapped_back_to_pair_order(tmp_path):
    jt.CALLS.clear()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(), python_cfg("prefer_shorter"), store=store)
    assert len(out) == 6 and len(jt.CALLS) == 6
    assert sorted(out["order"]) == ["ab"] * 3 + ["ba"] * 3
    # response_b is shorter in every pair: P(a wins) is 0.1 from both orders
    assert out["p_a"] == pytest.approx([0.1] * 6)
    assert set(out["status"]) == {"ok"}
    ab = [r for r in out if r["order"] == "ab"][0]
    ba = [r for r in out if r["order"] == "ba" and r["pair_id"] == ab["pair_id"]][0]
    assert ab["p_first"] == pytest.approx(0.1) and ba["p_first"] == pytest.approx(0.9)
    assert ab["key"] != ba["key"]


def test_rerun_makes_zero_calls_and_marks_cached(tmp_path):
    jt.CALLS.clear()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        first = judge(pairs(), python_cfg("prefer_shorter"), store=store)
        calls = len(jt.CALLS)
        second = judge(pairs(), python_cfg("prefer_shorter"), store=store)
    assert calls == 6 and len(jt.CALLS) == 6
    assert not any(first["cached"]) and all(second["cached"])
    assert second["p_a"] == first["p_a"]


def test_original_order_only(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(), python_cfg("first_always", orders="original"), store=store)
    assert out["order"] == ["ab"] * 3
    assert out["p_a"] == [1.0] * 3


def test_failures_are_recorded_with_reason_and_retried(tmp_path):
    data = Dataset.from_dict({**pairs(2).to_dict(), "prompt": ["has x", "fine"]})
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(data, python_cfg("explodes_on_x"), store=store)
        bad = [r for r in out if r["prompt"] == "has x"]
        assert {r["status"] for r in bad} == {"error"}
        assert "RuntimeError: cannot judge prompts with an x" in bad[0]["error"]
        assert {r["status"] for r in out if r["prompt"] == "fine"} == {"ok"}
        again = judge(data, python_cfg("explodes_on_x"), store=store)
        assert sum(again["cached"]) == 2  # the two good ones; the errors were tried again


def test_unreadable_answer_is_invalid_not_dropped(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(1), python_cfg("garbage"), store=store)
    assert out["status"] == ["invalid", "invalid"]
    assert out["raw_output"] == ["'maybe?'", "'maybe?'"]
    assert out["p_a"] == [None, None]


def test_transformers_judge_reads_label_probabilities(tmp_path, tiny_model):
    cfg = JudgeConfig(
        judges=[
            TransformersJudgeConfig(
                name="tiny", model=str(tiny_model), dtype="float32", batch_size=2
            )
        ]
    )
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(3), cfg, store=store)
    assert len(out) == 6 and set(out["status"]) == {"ok"}
    for row in out:
        assert 0.0 < row["p_first"] < 1.0
        assert 0.0 < row["label_mass"] < 1.0
        assert row["verdict"] == ("A" if row["p_first"] >= 0.5 else "B")
        assert row["rubric_id"] == "helpful_harmless@1"
    # a random model is not symmetric: the two orders give different probabilities
    assert len({round(p, 6) for p in out["p_first"]}) > 1


def test_transformers_judge_too_long_prompt_is_an_error_record(tmp_path, tiny_model):
    cfg = JudgeConfig(
        judges=[TransformersJudgeConfig(model=str(tiny_model), max_length=40, dtype="float32")]
    )
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(1), cfg, store=store)
    assert out["status"] == ["error", "error"]
    assert "over max_length=40" in out["error"][0]


def test_embedded_judge_answers_with_a_label(tmp_path, embedded_model):
    """The real SmolLM2 judge puts real mass on the labels; its strong first-position bias shows
    up as opposite P(a wins) across the two orders, which is what the swap exists to cancel."""
    data = Dataset.from_dict(
        {
            "pair_id": ["cap:0-1", "math:0-1"],
            "prompt_id": ["cap", "math"],
            "prompt": ["What is the capital of France?", "What is 2 + 2?"],
            "index_a": [0, 0],
            "index_b": [1, 1],
            "response_a": ["The capital of France is Paris.", "2 + 2 = 5."],
            "response_b": ["I like turtles.", "2 + 2 = 4."],
        }
    )
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(data, JudgeConfig(), store=store)
    assert set(out["status"]) == {"ok"}
    assert min(out["label_mass"]) > 0.05
    for pair_id in ("cap:0-1", "math:0-1"):
        ab, ba = (r["p_a"] for r in out if r["pair_id"] == pair_id)
        assert abs(ab - ba) > 0.5
