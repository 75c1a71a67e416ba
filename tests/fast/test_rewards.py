"""The reward adapters' core: verifiable checks, a user's Python check in worker processes,
the mixed reward's components and normalisation, comparisons without a reference, the
service that gathers concurrent callers, staleness, and one budget across processes."""

import threading
import time

import judges_for_tests as jt
import pytest

from rlaif.config import JudgeConfig, PythonJudgeConfig, RewardConfig, validate_pipeline
from rlaif.errors import RlaifError
from rlaif.judges import Budget
from rlaif.judging.shared_budget import SharedBudget
from rlaif.judging.store import JudgmentStore
from rlaif.rewards import checks
from rlaif.rewards.mixed import Item, MixedReward
from rlaif.rewards.service import RewardService

SHORTER = PythonJudgeConfig(name="rule", callable="judges_for_tests:prefer_shorter")
RANKER = PythonJudgeConfig(name="ranker", callable="judges_for_tests:rank_shorter", mode="listwise")


@pytest.mark.parametrize(
    "completion, reference, expected",
    [
        ("So the answer is 1,000.", "1000", 1.0),
        ("We get \\boxed{\\frac{3}{4}}", "0.75", 1.0),
        ("Half of them: 50%", "The answer is 0.5", 1.0),
        ("I think it is 42", "42.0", 1.0),
        ("Answer: Paris.", "paris", 1.0),
        ("x = 7, then 8", "7", 0.0),
        ("no number here", "3", 0.0),
        ("#### 1e3", "1000", 1.0),
    ],
)
def test_the_final_answer_is_compared_as_a_number_or_as_text(completion, reference, expected):
    assert checks.exact_answer(completion, reference) == expected


def test_format_checks():
    assert checks.regex("Sources: [1]", r"\[\d+\]") == 1.0
    assert checks.regex("no sources", r"\[\d+\]") == 0.0
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    assert checks.json_schema('Here:\n```json\n{"name": "x"}\n```', schema) == 1.0
    assert checks.json_schema('{"name": 3}', schema) == 0.0
    assert checks.json_schema("prose only", schema) == 0.0
    with pytest.raises(checks.CheckFailed, match="no reference"):
        checks.exact_answer("42", None)


def test_a_python_check_that_hangs_crashes_or_hogs_memory_costs_only_its_answer():
    def run(target: str, **limits) -> list:
        check = checks.PythonCheck(
            f"checks_for_tests:{target}",
            timeout_s=limits.get("timeout_s", 5.0),
            memory_mb=limits.get("memory_mb", 512),
            workers=1,
        )
        try:
            return check.many([("p", c, None) for c in limits.get("answers", ["a tea", "b"])])
        finally:
            check.close()

    assert run("mentions_tea") == [1.0, 0.0]
    start = time.perf_counter()
    hung = run("hangs", timeout_s=0.5)
    assert all(isinstance(h, checks.CheckFailed) and "ran past 0.5 s" in str(h) for h in hung)
    assert time.perf_counter() - start < 10
    crashed = run("crashes", answers=["crash now", "fine"])
    assert isinstance(crashed[0], checks.CheckFailed) and crashed[1] == 0.5  # a new worker
    hogged = run("hogs_memory", memory_mb=256, answers=["x"])
    assert isinstance(hogged[0], checks.CheckFailed), hogged
    nonsense = run("says_nonsense", answers=["x"])
    assert isinstance(nonsense[0], checks.CheckFailed) and "not a finite number" in str(nonsense[0])


def test_components_are_weighted_normalised_per_group_and_logged(tmp_path):
    cfg = RewardConfig(
        components=[
            {"kind": "judge", "judge": "rule", "weight": 1.0},
            {"kind": "exact_answer", "weight": 2.0, "normalize": "group"},
            {
                "kind": "python",
                "name": "tea",
                "callable": "checks_for_tests:mentions_tea",
                "weight": 0.5,
                "timeout_s": 5,
            },
        ]  # fmt: skip
    )
    items = [
        Item("What is 6 x 7?", "42", "The answer is 42."),
        Item("What is 6 x 7?", "It is 41, with a cup of tea", "The answer is 42."),
        Item("What is 2 + 2?", "4", "The answer is 4."),
        Item("What is 2 + 2?", "four, I would say", "The answer is 4."),
    ]
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        reward = MixedReward(
            JudgeConfig(judges=[SHORTER]), cfg, store, Budget(), log_path=tmp_path / "log.jsonl"
        )
        try:
            got = reward.score(items, step=3)
        finally:
            reward.close()
    assert got.components["exact_answer"] == [1.0, 0.0, 1.0, 0.0]
    assert got.components["tea"] == [0.0, 1.0, 0.0, 0.0]
    judged = got.components["rule"]
    assert judged[0] > 0.5 > judged[1] and judged[2] > 0.5 > judged[3]  # shorter beats the label
    # the exact answer normalised within each prompt's group: +1 and -1
    assert got.total[0] == pytest.approx(judged[0] + 2.0 * 1.0)
    assert got.total[1] == pytest.approx(judged[1] - 2.0 + 0.5)
    logged = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(logged) == 1 and '"step": 3' in logged[0] and '"tea"' in logged[0]


def test_a_judge_failure_follows_on_failure(tmp_path):
    judges = JudgeConfig(
        judges=[PythonJudgeConfig(name="x", callable="judges_for_tests:explodes_on_x")]
    )
    items = [Item("fine prompt", "a", "b"), Item("prompt with x", "a", "b")]
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        for policy, second in (("neutral", 0.5), ("null", None)):
            reward = MixedReward(judges, RewardConfig(on_failure=policy), store, Budget())
            got = reward.score(items)
            assert got.total[1] == second and got.failed == [None, "error"]
            assert "RuntimeError" in got.reasons["x"][1]
        strict = MixedReward(judges, RewardConfig(on_failure="error"), store, Budget())
        with pytest.raises(RlaifError, match="1 of 2 answer\\(s\\) got no judgment"):
            strict.score(items)


def test_without_a_reference_a_group_is_ranked_in_one_call(tmp_path):
    prompts = ["Name a fruit."] * 4 + ["Name a tree."] * 2
    completions = ["Fig.", "An apple.", "A ripe banana.", "Fig.", "Oak.", "A tall birch."]
    items = [Item(p, c) for p, c in zip(prompts, completions, strict=True)]
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        jt.CALLS.clear()
        ranked = MixedReward(JudgeConfig(judges=[RANKER]), RewardConfig(), store, Budget())
        got = ranked.score(items).total
        calls = len(jt.CALLS)
        # one ranking per group and order shown: 2 groups x 2 orders
        assert calls == 4
        assert got[0] == got[3] > got[1] > got[2] and got[4] > got[5]
        assert got[0] == pytest.approx(1.0) and got[2] == pytest.approx(0.0)
        pairwise = MixedReward(JudgeConfig(judges=[SHORTER]), RewardConfig(), store, Budget())
        by_pairs = pairwise.score(items).total
    assert by_pairs[0] > by_pairs[1] > by_pairs[2] and by_pairs[4] > by_pairs[5]


def test_the_store_records_the_policy_step_and_reuse_says_how_stale(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        reward = MixedReward(JudgeConfig(judges=[SHORTER]), RewardConfig(), store, Budget())
        reward.score([Item("Q?", "a", "the label")], step=2)
        again = reward.score([Item("Q?", "a", "the label"), Item("Q?", "bb", "the label")], step=9)
        steps = {r["policy_step"] for r in store}
    assert steps == {2, 9}
    judged = again.account["judges"][0]
    assert judged["stale_judgments"] == 2 and judged["staleness_max"] == 7


def pipeline_cfg(tmp_path, **judge):
    return validate_pipeline(
        {
            "name": "r",
            "output_dir": str(tmp_path / "out"),
            "judge": {
                "judges": [SHORTER.model_dump()],
                "cache": str(tmp_path / "j.sqlite"),
                **judge,
            },
        }  # fmt: skip
    )


def test_callers_from_many_threads_are_scored_in_few_batches(tmp_path):
    service = RewardService(pipeline_cfg(tmp_path), linger_s=0.05)
    got: dict[int, float] = {}

    def call(n: int) -> None:
        got[n] = service.score([Item("Q?", "x" * (n + 1), "xxxx")])[0].total

    threads = [threading.Thread(target=call, args=(n,)) for n in range(16)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        service.close()
    assert len(got) == 16 and got[0] > 0.5 > got[15]
    assert service.batches < 8


def test_one_budget_across_processes_that_name_the_same_session(tmp_path):
    path = tmp_path / "j.sqlite"
    JudgmentStore(path).close()
    first = SharedBudget(path, "night-1", max_cost_usd=1.0)
    second = SharedBudget(path, "night-1", max_cost_usd=1.0)
    other = SharedBudget(path, "night-2", max_cost_usd=1.0)
    try:
        first.add(0.6)
        assert second.allows()
        second.add(0.5)
        time.sleep(0.6)  # past the refresh interval
        assert not first.allows() and not second.allows() and second.exhausted()
        assert first.spent == 0.6 and second.spent == 0.5  # each keeps its own share too
        assert other.allows()
    finally:
        for b in (first, second, other):
            b.close()
