"""``judge.cascade``: the strong judge asked only about the pairs the cheap ones leave unsure,
its verdict deciding those, in the judge stage, the aggregate, the live reward, judge-eval
and the estimate."""

import judges_for_tests
import pytest
from datasets import Dataset
from pydantic import ValidationError

from rlaif.config import AggregateConfig, JudgeConfig, PipelineConfig
from rlaif.debias.cascade import decided, select, unsure_pairs
from rlaif.errors import ConfigError
from rlaif.judges import Budget
from rlaif.judging.judge_eval import judge_eval
from rlaif.judging.reward import JudgeReward
from rlaif.judging.store import JudgmentStore
from rlaif.run.datasets_io import save_atomic
from rlaif.run.estimate import estimate
from rlaif.run.run_dir import RunDir
from rlaif.stages import aggregate, judge
from rlaif.stages.judge import cascade_counts

CHEAP = {"name": "cheap", "backend": "python", "callable": "judges_for_tests:sure_only_when_far"}
STRONG = {"name": "strong", "backend": "python", "callable": "judges_for_tests:prefer_shorter"}


def row(pair, judge, order, p_a, status="ok"):
    return {"pair_id": pair, "judge": judge, "order": order, "p_a": p_a, "status": status}


def test_the_unsure_pairs_are_the_close_the_flipped_the_split_and_the_unreadable():
    rows = [
        row("sure", "c", "ab", 0.9), row("sure", "c", "ba", 0.8),
        row("close", "c", "ab", 0.6), row("close", "c", "ba", 0.5),
        row("flip", "c", "ab", 0.99), row("flip", "c", "ba", 0.4),  # mean 0.695: not close
        row("split", "c", "ab", 0.9), row("split", "c", "ba", 0.9),
        row("split", "d", "ab", 0.3), row("split", "d", "ba", 0.3),
        row("unreadable", "c", "ab", None, "invalid"),
        row("unreadable", "c", "ba", None, "invalid"),
        row("waiting", "c", "ab", 0.5), row("waiting", "c", "ba", None, "pending"),
    ]  # fmt: skip
    assert unsure_pairs(rows, threshold=0.15) == {"close", "flip", "split", "unreadable"}
    assert unsure_pairs(rows, threshold=0.15, flips=False, disagreement=False) == {
        "close",
        "unreadable",
        "split",  # the panel's mean (0.6) is close too
    }
    assert unsure_pairs(rows, threshold=0.05, flips=False, disagreement=False) == {"unreadable"}
    both = [*rows, row("close", "s", "ab", 0.1), row("close", "s", "ba", 0.2)]
    kept = [r for r, d in zip(both, decided(both, "s"), strict=True) if d]
    assert {(r["pair_id"], r["judge"]) for r in kept if r["pair_id"] == "close"} == {("close", "s")}
    assert [r["judge"] for r in kept if r["pair_id"] == "sure"] == ["c", "c"]
    # offline: what a cascade would have kept of a table where the strong judge saw everything
    table = [*rows, *(row(p, "s", o, 0.2) for p in ("sure", "flip") for o in ("ab", "ba"))]
    picked = select(table, "s", threshold=0.15)
    assert {r["judge"] for r in picked if r["pair_id"] == "flip"} == {"s"}
    assert {r["judge"] for r in picked if r["pair_id"] == "sure"} == {"c"}


def test_a_cascade_is_checked_before_anything_runs():
    for judges, cascade, said in [
        ([CHEAP, STRONG], {"strong": "nobody"}, "no judge named 'nobody'"),
        ([STRONG], {"strong": "strong"}, "needs a cheaper judge"),
    ]:
        with pytest.raises(ValidationError, match=said):
            JudgeConfig(judges=judges, cascade=cascade)
    with pytest.raises(ValidationError, match="use one"):
        JudgeConfig(
            judges=[CHEAP, STRONG],
            orders="adaptive",
            adaptive={"escalate_to": "strong"},
            cascade={"strong": "strong"},
        )


def pairs() -> Dataset:
    """Four pairs: two whose lengths differ a lot (the cheap judge is sure), two close."""
    texts = [("Hi.", "Hello, how are you doing on this fine day?"), ("Yes.", "Yes, I do."),
             ("A long reply that goes on.", "Short."), ("No way.", "Nope!")]  # fmt: skip
    return Dataset.from_dict(
        {
            "pair_id": [f"p{i}:0-1" for i in range(4)],
            "prompt_id": [f"p{i}" for i in range(4)],
            "prompt": ["Say something."] * 4,
            "index_a": [0] * 4,
            "index_b": [1] * 4,
            "response_a": [a for a, _ in texts],
            "response_b": [b for _, b in texts],
        }
    )


def test_the_strong_judge_decides_only_the_pairs_the_cheap_one_leaves_unsure(tmp_path):
    cfg = JudgeConfig(judges=[CHEAP, STRONG], cascade={"strong": "strong"})
    judges_for_tests.CALLS.clear()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        rows = judge(pairs(), cfg, store=store, budget=Budget())
        strong = [r for r in rows if r["judge"] == "strong"]
        assert sorted({r["pair_id"] for r in strong}) == ["p1:0-1", "p3:0-1"]  # the close ones
        assert len(judges_for_tests.CALLS) == 4  # two pairs, both orders
        assert all(r["decides"] for r in strong)
        cheap_p1 = [r for r in rows if r["judge"] == "cheap" and r["pair_id"] == "p1:0-1"]
        assert [r["decides"] for r in cheap_p1] == [False, False]
        assert cascade_counts(rows, "strong") == {
            "pairs": 4,
            "strong_pairs": 2,
            "strong_share": 0.5,
        }
        prefs = aggregate(rows, AggregateConfig(ties="keep"))
        decided_by = dict(zip(prefs["pair_id"], prefs["judges"], strict=True))
        assert decided_by["p1:0-1"] == ["strong"] and decided_by["p0:0-1"] == ["cheap"]
        chosen = dict(zip(prefs["pair_id"], prefs["p_chosen"], strict=True))
        assert chosen["p1:0-1"] == pytest.approx(0.9)  # the strong judge's, not the cheap tie
        # the next run asks nobody again
        judges_for_tests.CALLS.clear()
        again = judge(pairs(), cfg, store=store, budget=Budget())
        assert judges_for_tests.CALLS == [] and all(again["cached"])


def test_a_strong_judge_must_compare_pairs(tmp_path):
    ranker = {"name": "ranker", "backend": "python", "callable": "judges_for_tests:rank_shorter",
              "mode": "listwise"}  # fmt: skip
    cfg = JudgeConfig(judges=[CHEAP, ranker], cascade={"strong": "ranker"})
    with (
        JudgmentStore(tmp_path / "j.sqlite") as store,
        pytest.raises(ConfigError, match="pairwise"),
    ):
        judge(pairs(), cfg, store=store, budget=Budget())


def test_the_live_reward_takes_the_strong_verdict_where_it_decided(tmp_path):
    cfg = JudgeConfig(judges=[CHEAP, STRONG], cascade={"strong": "strong"})
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        reward = JudgeReward(cfg, store, Budget())
        # close to the reference answer in length: the cheap judge is unsure, the strong decides
        got = reward.scored(["Say something."], ["Yes."], [["Yes, I do."]])
    assert got[0].value == pytest.approx(0.9)


def test_judge_eval_reports_the_cascade_beside_each_judge(tmp_path):
    labelled = Dataset.from_dict(
        {
            "prompt": ["Say something."] * 4,
            "chosen": ["Hi.", "Yes.", "Short.", "Nope!"],
            "rejected": ["Hello, how are you doing on this fine day?", "Yes, I do.",
                         "A long reply that goes on.", "No way."],
        }
    )  # fmt: skip
    cfg = JudgeConfig(judges=[CHEAP, STRONG], cascade={"strong": "strong"})
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        result = judge_eval(labelled, cfg, store)
    accuracy = result["accuracy"]
    assert accuracy["judge_strong"]["accuracy"] == 1.0
    assert accuracy["judge_cheap"]["accuracy"] == 0.75  # its close pairs are ties: 0.5 each
    assert accuracy["cascade"] == {"accuracy": 1.0, "coverage": 1.0, "calls": 0.5}


def test_the_estimate_counts_the_strong_judge_as_at_most_every_pair(tmp_path):
    cfg = PipelineConfig(
        name="t", judge={"judges": [CHEAP, STRONG], "cascade": {"strong": "strong"}}
    )
    rows = {(e.stage, e.judge): e for e in estimate(cfg, tmp_path, tmp_path / "none.sqlite")}
    assert rows["judge", "strong"].calls == rows["judge", "cheap"].calls
    assert not rows["judge", "strong"].exact


def test_the_estimate_counts_the_strong_judge_exactly_once_the_cheap_answers_are_stored(tmp_path):
    cfg = PipelineConfig(
        name="t", judge={"judges": [CHEAP, STRONG], "cascade": {"strong": "strong"}}
    )
    save_atomic(pairs(), RunDir(tmp_path).output("pair"))
    store_path = tmp_path / "j.sqlite"

    def judge_rows():
        return {(e.stage, e.judge): e for e in estimate(cfg, tmp_path, store_path)}

    with JudgmentStore(store_path) as store:  # nothing answered yet: at most every pair
        rows = judge_rows()
        assert (rows["judge", "strong"].calls, rows["judge", "strong"].exact) == (8, False)
        judge(pairs(), JudgeConfig(judges=[CHEAP]), store=store, budget=Budget())
    rows = judge_rows()  # the cheap judge's answers stored: its two close pairs, both orders
    assert rows["judge", "cheap"].calls == 0
    assert (rows["judge", "strong"].calls, rows["judge", "strong"].exact) == (4, True)
    judges_for_tests.CALLS.clear()
    with JudgmentStore(store_path) as store:
        judge(pairs(), cfg.judge, store=store, budget=Budget())
    assert len(judges_for_tests.CALLS) == 4  # what the estimate said
    assert judge_rows()["judge", "strong"].calls == 0
