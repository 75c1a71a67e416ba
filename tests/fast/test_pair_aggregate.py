import pytest
from datasets import Dataset

from rlaif.config import AggregateConfig, PairConfig
from rlaif.stages import aggregate, pair
from rlaif.stages.aggregate import held_back_pairs


def samples(responses_per_prompt):
    return Dataset.from_dict(
        {
            "prompt_id": [f"p{i}" for i in range(len(responses_per_prompt))],
            "prompt": [f"question {i}" for i in range(len(responses_per_prompt))],
            "category": [""] * len(responses_per_prompt),
            "responses": responses_per_prompt,
        }
    )


def test_all_pairs_and_identical_skipped():
    out = pair(samples([["a", "bb", "ccc", "dddd"], ["x", "x ", "y"]]), PairConfig())
    ids = out["pair_id"]
    assert ids[:6] == ["p0:0-1", "p0:0-2", "p0:0-3", "p0:1-2", "p0:1-3", "p0:2-3"]
    assert ids[6:] == ["p1:0-2", "p1:1-2"]  # "x" and "x " are the same answer
    row = out[0]
    assert (row["response_a"], row["response_b"], row["prompt"]) == ("a", "bb", "question 0")
    kept = pair(samples([["x", "x"]]), PairConfig(skip_identical=False))
    assert len(kept) == 1


def test_random_pairs_takes_k_per_prompt_deterministically():
    data = samples([["a", "b", "c", "d", "e"]] * 3)
    cfg = PairConfig(strategy="random_pairs", k=3, seed=1)
    first, second = pair(data, cfg), pair(data, cfg)
    assert len(first) == 9
    assert first["pair_id"] == second["pair_id"]
    assert len(set(first["pair_id"])) == 9


def judgments(rows):
    """rows: (pair_id, order, p_a, status)"""
    base = {
        "prompt_id": "p",
        "prompt": "Q",
        "response_a": "long answer",
        "response_b": "short",
        "index_a": 0,
        "index_b": 1,
        "judge": "j",
        "rubric_id": "r@1",
        "rubric_hash": "h",
    }
    return Dataset.from_list(
        [
            {
                **base,
                "pair_id": pid,
                "order": order,
                "p_a": p,
                "status": status,
                "key": f"{pid}-{order}",
            }
            for pid, order, p, status in rows
        ]
    )


def test_soft_average_cancels_constant_position_bias():
    # The judge adds +0.3 to whichever response is shown first; truth: b is better (p_a=0.3).
    data = judgments([("x", "ab", 0.6, "ok"), ("x", "ba", 0.0, "ok")])
    out = aggregate(data, AggregateConfig(ties="keep"))
    assert len(out) == 1
    row = out[0]
    assert row["chosen"] == [{"role": "assistant", "content": "short"}]
    assert row["rejected"] == [{"role": "assistant", "content": "long answer"}]
    assert row["prompt"] == [{"role": "user", "content": "Q"}]
    assert row["p_chosen"] == pytest.approx(0.7)
    assert row["margin"] == pytest.approx(0.4)
    assert row["tie"] is True  # hard verdicts flipped with the order
    assert row["judgment_keys"] == ["x-ab", "x-ba"]
    assert row["rubric_ids"] == ["r@1"]


def test_ties_dropped_by_default_consistent_pairs_kept():
    data = judgments(
        [
            ("flip", "ab", 0.8, "ok"),
            ("flip", "ba", 0.3, "ok"),
            ("agree", "ab", 0.8, "ok"),
            ("agree", "ba", 0.9, "ok"),
        ]
    )
    out = aggregate(data, AggregateConfig())
    assert out["pair_id"] == ["agree"]
    assert out["tie"] == [False]
    assert out[0]["chosen"][0]["content"] == "long answer"


def test_half_judged_pairs_are_held_back_unless_published_as_incomplete():
    """A pair with a valid judgment in one order only is not a preference: by default it is
    held back (and counted); ``incomplete: publish`` keeps it, marked ``complete`` false."""
    data = judgments(
        [
            ("half", "ab", 0.9, "ok"),
            ("half", "ba", None, "invalid"),
            ("failed", "ab", 0.9, "ok"),
            ("failed", "ba", None, "error"),
            ("none", "ab", None, "error"),
            ("none", "ba", None, "invalid"),
            ("full", "ab", 0.9, "ok"),
            ("full", "ba", 0.8, "ok"),
        ]
    )
    out = aggregate(data, AggregateConfig())
    assert out["pair_id"] == ["full"]
    assert out["complete"] == [True]
    assert held_back_pairs(data) == {"failed": 2, "unreadable": 1}
    published = aggregate(data, AggregateConfig(incomplete="publish"))
    rows = zip(published["pair_id"], published["complete"], published["n_judgments"], strict=True)
    assert sorted(rows) == [
        ("failed", False, 1),
        ("full", True, 2),
        ("half", False, 1),
    ]


def test_min_margin_filters_weak_preferences():
    data = judgments(
        [
            ("weak", "ab", 0.55, "ok"),
            ("weak", "ba", 0.52, "ok"),
            ("strong", "ab", 0.95, "ok"),
            ("strong", "ba", 0.85, "ok"),
        ]
    )
    out = aggregate(data, AggregateConfig(min_margin=0.5))
    assert out["pair_id"] == ["strong"]
