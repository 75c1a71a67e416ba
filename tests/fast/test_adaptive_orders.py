"""``judge.orders: adaptive``: each pair once, the other order (or a stronger judge) only
where the first answer is unsure, with the judge's position bias measured on a sample."""

import math

import judges_for_tests as jt
import pytest
from datasets import Dataset
from pydantic import ValidationError

from rlaif.config import (
    AdaptiveOrdersConfig,
    AggregateConfig,
    JudgeConfig,
    PythonJudgeConfig,
    TransformersJudgeConfig,
)
from rlaif.debias.adaptive_orders import MIN_BIAS_PAIRS, bias_sample, first_order, select
from rlaif.errors import ConfigError
from rlaif.judges import build_judge
from rlaif.judging.service import escalation_judge
from rlaif.judging.store import JudgmentStore
from rlaif.stages import aggregate, judge
from rlaif.stages.judge import adaptive_counts
from rlaif.testing.simulated import SimulatedJudge, simulate


def pairs(n=40):
    """Pair i: answers whose lengths differ by i - n/2 characters (some gaps clear, some not)."""
    return Dataset.from_dict(
        {
            "pair_id": [f"p{i}:0-1" for i in range(n)],
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": [f"question {i}" for i in range(n)],
            "index_a": [0] * n,
            "index_b": [1] * n,
            "response_a": ["x" * 50] * n,
            "response_b": ["y" * (50 + i - n // 2) for i in range(n)],
        }
    )


def cfg(**adaptive):
    return JudgeConfig(
        judges=[
            PythonJudgeConfig(name="biased", callable="judges_for_tests:first_biased_by_length"),
            PythonJudgeConfig(name="strong", callable="judges_for_tests:prefer_shorter"),
        ],
        orders="adaptive",
        adaptive=AdaptiveOrdersConfig(**adaptive),
    )


def one_judge(**adaptive):
    full = cfg(**adaptive)
    return full.model_copy(update={"judges": full.judges[:1]})


def asked(out) -> set[tuple[str, str, str]]:
    return set(zip(out["judge"], out["pair_id"], out["order"], strict=True))


def test_measured_bias_decides_which_pairs_are_asked_again(tmp_path):
    data = pairs()
    sample = bias_sample(data["pair_id"], 0.05, seed=0)
    assert len(sample) == MIN_BIAS_PAIRS
    jt.CALLS.clear()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(data, one_judge(threshold=0.15), store=store)
    # the judge's bias is 0.25 and its own doubt 0.2 * tanh(gap / 20): a pair is unsure
    # exactly when that doubt is under the threshold, whatever order it was shown in
    gaps = {pid: len(b) - 50 for pid, b in zip(data["pair_id"], data["response_b"], strict=True)}
    expected_again = {
        pid
        for pid, gap in gaps.items()
        if pid not in sample and abs(0.2 * math.tanh(gap / 20)) < 0.15
    }
    both = {pid for pid in gaps if {("biased", pid, "ab"), ("biased", pid, "ba")} <= asked(out)}
    assert both == sample | expected_again
    assert 0 < len(expected_again) < len(gaps) - len(sample)
    assert len(jt.CALLS) == len(out) == len(gaps) + len(both)
    for pid in set(gaps) - both:  # the rest was shown once, in its seeded order
        assert ("biased", pid, first_order(pid, 0)) in asked(out)
    counts = adaptive_counts(out, len(data), one_judge())
    assert counts["requests"] == len(out) and counts["both_orders_requests"] == 80
    assert counts["calls_saved"] == pytest.approx(1 - len(out) / 80, abs=1e-4)


def test_without_the_bias_sample_a_biased_judge_looks_sure(tmp_path):
    """Taking the bias as 0 (no sample), the 0.25 lean makes almost every first answer look
    sure: the sample is what makes the saving honest."""
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        measured = judge(pairs(), one_judge(threshold=0.15), store=store)
        blind = judge(pairs(), one_judge(threshold=0.15, bias_sample=0), store=store)
    again = len(blind) - 40
    assert again < len(measured) - 40 - MIN_BIAS_PAIRS


def test_rerun_asks_nothing_and_gives_the_same_rows(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        first = judge(pairs(), one_judge(), store=store)
        jt.CALLS.clear()
        again = judge(pairs(), one_judge(), store=store)
    assert jt.CALLS == [] and all(again["cached"])
    assert asked(again) == asked(first)


def test_unsure_pairs_escalate_to_the_named_judge_in_the_other_order(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        alone = judge(pairs(), one_judge(), store=store)
        out = judge(pairs(), cfg(escalate_to="strong"), store=store)
    strong = {(pid, order) for name, pid, order in asked(out) if name == "strong"}
    sample = bias_sample(pairs()["pair_id"], 0.05, seed=0)
    unsure = {
        pid
        for name, pid, order in asked(alone)
        if order != first_order(pid, 0) and pid not in sample
    }
    assert {pid for pid, _ in strong} == unsure and unsure
    assert all(order != first_order(pid, 0) for pid, order in strong)
    biased = {(pid, order) for name, pid, order in asked(out) if name == "biased"}
    assert len(biased) == 40 + len(sample)  # no second order of its own for unsure pairs
    counts = adaptive_counts(out, 40, cfg(escalate_to="strong"))
    assert counts["escalated"] == len(unsure) and counts["both_orders_requests"] == 80


def test_offline_selection_matches_what_the_stage_asked(tmp_path):
    """``select`` on a both-orders table picks the rows the adaptive stage asks: the figures
    measured offline (judge-eval, the benchmark) are those a run would get."""
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        full = judge(pairs(), cfg().model_copy(update={"orders": "both"}), store=store)
        adaptive = judge(pairs(), cfg(), store=store)
        escalating = judge(pairs(), cfg(escalate_to="strong"), store=store)
    table = full.to_pandas()
    for run, escalate_to in ((adaptive, None), (escalating, "strong")):
        chosen = select(table, threshold=0.15, bias_share=0.05, escalate_to=escalate_to)
        assert asked(chosen) == asked(run)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"adaptive": {"escalate_to": "nobody"}}, "no judge named 'nobody'"),
        ({"orders": "both", "adaptive": {"escalate_to": "strong"}}, "only with orders: adaptive"),
        ({"adaptive": {"threshold": 0.7}}, "less than or equal to 0.5"),
    ],
)
def test_bad_adaptive_settings_are_refused(update, message):
    data = {**cfg().model_dump(), "orders": "adaptive", **update}
    with pytest.raises(ValidationError, match=message):
        JudgeConfig.model_validate(data)


def test_position_biased_judge_keeps_accuracy_with_fewer_calls():
    """The issue's bar on the debiasing benchmark's soft position-biased judge: at the
    default settings, at least 95% of both orders' accuracy with at most 65% of its calls."""
    sim = simulate([SimulatedJudge(position_bias=1.5)], prompts=300)
    table = sim.judgments.to_pandas()
    defaults = AdaptiveOrdersConfig()
    chosen = select(table, threshold=defaults.threshold, bias_share=defaults.bias_sample)

    def accuracy(rows):
        rows = Dataset.from_pandas(rows, preserve_index=False)
        return sim.accuracy(aggregate(rows, AggregateConfig(ties="keep")))

    assert len(chosen) <= 0.65 * len(table)
    assert accuracy(chosen) >= 0.95 * accuracy(table)
    one_order = table[table["order"] == "ab"]
    assert accuracy(one_order) < 0.95 * accuracy(table)  # one order alone would not do


def test_escalating_to_a_pointwise_judge_is_refused_before_judging(tiny_model):
    judges = JudgeConfig(
        judges=[
            PythonJudgeConfig(name="biased", callable="judges_for_tests:first_biased_by_length"),
            TransformersJudgeConfig(
                name="scorer", model=str(tiny_model), rubric="ultrafeedback_helpfulness"
            ),
        ],
        orders="adaptive",
        adaptive=AdaptiveOrdersConfig(escalate_to="scorer"),
    )
    backends = {spec.name: build_judge(spec) for spec in judges.judges}
    with pytest.raises(ConfigError, match="'scorer' uses a pointwise rubric"):
        escalation_judge(judges, backends)
