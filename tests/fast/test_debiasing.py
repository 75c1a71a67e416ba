"""Simulated judges with known position and length bias on synthetic pairs with a known truth:
the debiased preferences must recover the truth measurably better than the raw ones."""

import numpy as np
import pytest
from datasets import Dataset

from rlaif.config import AggregateConfig, JudgeConfig, PairConfig, PythonJudgeConfig
from rlaif.debias import bradley_terry
from rlaif.debias.bias import cohen_kappa, judge_report
from rlaif.judging.store import JudgmentStore
from rlaif.stages import aggregate, judge, pair
from rlaif.stages.evaluate import length_controlled_win_rate
from rlaif.testing.simulated import SimulatedJudge, simulate


def first_order_only(ds: Dataset) -> Dataset:
    return ds.select([i for i, o in enumerate(ds["order"]) if o == "ab"])


@pytest.mark.parametrize("soft", [True, False])
def test_both_orders_undo_position_bias(soft):
    sim = simulate([SimulatedJudge(position_bias=1.5, soft=soft)], prompts=300)
    raw = sim.accuracy(aggregate(first_order_only(sim.judgments), AggregateConfig(ties="keep")))
    dropped = aggregate(sim.judgments, AggregateConfig(ties="drop"))
    assert sim.accuracy(dropped) > raw + 0.1
    if soft:  # soft labels averaged over both orders help on every pair, not only the kept
        both = sim.accuracy(aggregate(sim.judgments, AggregateConfig(ties="keep")))
        assert both > raw + 0.08
    report = judge_report(sim.judgments.to_pandas())["judges"]["sim"]
    assert report["first_position_win_rate"] > 0.65
    assert report["position_consistency"] < 0.7


def test_length_correction_undoes_length_bias():
    sim = simulate([SimulatedJudge(length_bias=1.5)], prompts=300)
    raw = sim.accuracy(aggregate(sim.judgments, AggregateConfig(ties="keep")))
    corrected = sim.accuracy(
        aggregate(sim.judgments, AggregateConfig(ties="keep", length_correction=True))
    )
    assert corrected > raw + 0.05
    report = judge_report(sim.judgments.to_pandas())["judges"]["sim"]
    assert report["longer_win_rate"] > 0.65 and report["length_slope"] > 0.5
    unbiased = judge_report(simulate([SimulatedJudge()], prompts=300).judgments.to_pandas())
    assert abs(unbiased["judges"]["sim"]["length_slope"]) < 0.2


def test_best_vs_worst_beats_all_pairs_on_noisy_judges():
    sim = simulate([SimulatedJudge(skill=1.0)], prompts=200, responses=6)
    all_pairs = aggregate(sim.judgments, AggregateConfig(ties="keep"))
    best = aggregate(sim.judgments, AggregateConfig(ties="keep", selection="best_vs_worst"))
    assert len(best) == 200 and len(all_pairs) == 200 * 15
    assert sim.accuracy(best) > sim.accuracy(all_pairs) + 0.05
    assert all(len(keys) == 30 for keys in best["judgment_keys"])  # 15 pairs x 2 orders


def test_random_pairs_selection_and_majority():
    sim = simulate([SimulatedJudge(soft=False)], prompts=20, responses=4)
    picked = aggregate(sim.judgments, AggregateConfig(ties="keep", selection="random_pairs", k=2))
    assert len(picked) == 40
    assert max(np.unique(picked["prompt_id"], return_counts=True)[1]) == 2
    majority = aggregate(sim.judgments, AggregateConfig(method="majority", ties="keep"))
    assert set(np.round(majority["p_chosen"], 6)) <= {0.5, 1.0}


def test_bradley_terry_recovers_a_known_order():
    rng = np.random.default_rng(1)
    truth = np.array([1.5, 0.5, 0.0, -1.0])
    i, j = np.triu_indices(4, 1)
    i, j = np.repeat(i, 200), np.repeat(j, 200)
    wins = (rng.random(len(i)) < bradley_terry.win_probability(truth[i], truth[j])).astype(float)
    scores = bradley_terry.fit(i, j, wins, 4, prior=0.0)
    assert list(np.argsort(-scores)) == [0, 1, 2, 3]
    assert scores - scores.mean() == pytest.approx(truth - truth.mean(), abs=0.25)


def test_panel_agreement():
    sim = simulate(
        [
            SimulatedJudge("a", soft=False),
            SimulatedJudge("b", soft=False),
            SimulatedJudge("coin", skill=0.0, soft=False),
        ],
        prompts=200,
    )
    report = judge_report(sim.judgments.to_pandas())["agreement"]
    assert report["cohen_kappa"]["a~b"] > 0.3
    assert abs(report["cohen_kappa"]["a~coin"]) < 0.15
    assert 0.0 < report["krippendorff_alpha"] < report["cohen_kappa"]["a~b"]
    assert cohen_kappa(np.array([1, 0, 1, 0]), np.array([1, 0, 1, 0])) == 1.0
    assert cohen_kappa(np.array([1, 0, 1, 0]), np.array([0, 1, 0, 1])) == -1.0


def test_length_balanced_pairs_and_random_order(tmp_path):
    samples = Dataset.from_dict(
        {
            "prompt_id": ["p"],
            "prompt": ["q"],
            "category": [""],
            "responses": [["ab", "abc", "a" * 30, "b" * 40]],
        }
    )
    balanced = pair(samples, PairConfig(max_length_ratio=1.5))
    assert balanced["pair_id"] == ["p:0-1", "p:2-3"]
    pairs = pair(
        Dataset.from_dict(
            {**samples.to_dict(), "responses": [[str(i) * (i + 1) for i in range(8)]]}
        ),
        PairConfig(),
    )
    cfg = JudgeConfig(
        judges=[PythonJudgeConfig(callable="judges_for_tests:prefer_shorter")],
        orders="random",
        seed=3,
    )
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs, cfg, store=store)
        again = judge(pairs, cfg, store=store)
    assert len(out) == len(pairs) == 28
    assert 5 < out["order"].count("ba") < 23  # both orders occur
    assert again["order"] == out["order"] and all(again["cached"])
    assert all(p == pytest.approx(0.9) for p in out["p_a"])  # a is always the shorter


def test_length_controlled_win_rate_discounts_length():
    # the policy wins exactly when it is longer: at equal length it would win about half
    rng = np.random.default_rng(0)
    diffs = rng.normal(0, 50, 200).round().astype(int)
    policy = ["x" * (100 + d) for d in diffs]
    reference = ["x" * 100] * 200
    p = [0.9 if d > 0 else 0.1 for d in diffs]
    lc = length_controlled_win_rate(p, policy, reference)
    assert abs(lc - 0.5) < 0.1
    better = length_controlled_win_rate([0.8] * 200, policy, reference)
    assert better == pytest.approx(0.8, abs=0.05)
