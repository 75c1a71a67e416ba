"""The pipeline's reward in a user's own ``trl.GRPOTrainer``: two steps on the tiny model, on a
plain dataset of the user's (text prompts with a reference column, and conversational prompts
without one), every judgment in the store, each component logged by TRL. (Killed and resumed
without paying twice: ``tests/evidence/test_trainer_rewards_resume.py``.)"""

import json

import pytest
from cli_runner import stored
from configs_for_tests import write
from trl_script import reward_pipeline, run_script

from rlaif.report import write_report
from rlaif.testing.loopback import LoopbackJudgeServer


def test_a_users_grpo_script_on_text_prompts_with_a_reference_column(tmp_path, tiny_model):
    components = [
        {"kind": "judge", "judge": "rule"},
        {"kind": "exact_answer", "weight": 0.5},
        {"kind": "python", "name": "brief", "callable": "checks_for_tests:crashes", "weight": 0.1},
    ]
    pipeline = write(tmp_path, reward_pipeline(tmp_path, components=components,
                                               reference_column="answer"))  # fmt: skip
    history = run_script(tmp_path, tiny_model, pipeline, "text")
    logged = [h for h in history if "reward/rule" in h]
    assert len(logged) == 2  # each step logs each component (TRL's log_metric)
    assert {"reward/exact_answer", "reward/brief", "rewards/rlaif/mean"} <= set(logged[0])
    lines = (tmp_path / "trl" / "reward_log.jsonl").read_text().splitlines()
    steps = [json.loads(x) for x in lines]
    assert [s["step"] for s in steps] == [0, 1] and steps[0]["completions"] == 4
    page = write_report(tmp_path / "trl")  # the trainer's folder: the reward's own report
    assert (page.parent / "reward_components.png").exists()
    assert "reward components by step" in page.read_text()
    judged = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    asked = {(c[0], c[1], c[2]) for c in judged if c[0].startswith("Compute")}
    assert stored(tmp_path / "judgments.sqlite") >= len(asked) > 0  # every judgment stored
    assert all(c[2].isdigit() or c[1].isdigit() for c in judged if c[0].startswith("Compute"))


def test_conversational_prompts_without_a_reference_rank_each_group(tmp_path, tiny_model):
    pipeline = write(tmp_path, reward_pipeline(tmp_path, components=[
        {"kind": "judge", "judge": "ranker"}]))  # fmt: skip
    history = run_script(tmp_path, tiny_model, pipeline, "conversation")
    assert [h["reward/ranker"] for h in history if "reward/ranker" in h]
    log = (tmp_path / "trl" / "reward_log.jsonl").read_text()
    steps = [json.loads(x) for x in log.splitlines()]
    judges = steps[0]["judges"][0]
    # one group of four completions: one ranking per order shown, never a pair at a time
    assert judges["calls"] <= 2 and judges["judgments"] >= 6


def test_one_budget_stops_every_adapter_that_names_the_session(tmp_path, tiny_model):
    """Two services on one store (two adapters, or two of a trainer's processes) naming one
    session: what the first spends stops the second's calls."""
    from configs_for_tests import api_judge, pipeline

    from rlaif.config import validate_pipeline
    from rlaif.rewards import Item, RewardService
    from rlaif.testing.loopback import LoopbackJudgeServer

    with LoopbackJudgeServer(models=("judge-model",)) as server:
        priced = api_judge(server.openai_url, max_concurrency=1,
                           price={"input_per_mtok": 100.0, "output_per_mtok": 0.0})  # fmt: skip
        cfg = validate_pipeline(
            pipeline(
                tmp_path,
                tiny_model,
                judges=[priced],
                judge={"max_cost_usd": 0.01},
                reward={"on_failure": "null"},
            )  # fmt: skip
        )
        first = RewardService(cfg, session="night-1")
        second = RewardService(cfg, session="night-1")
        try:
            spent = first.score_now([Item(f"Q{i}?", "a", "an answer") for i in range(20)])
            asked = server.requests
            assert any(r.total is None and r.failed == "skipped" for r in spent)
            assert first.budget.spent >= 0.01
            later = second.score_now([Item(f"R{i}?", "b", "an answer") for i in range(5)])
        finally:
            first.close()
            second.close()
    assert server.requests == asked  # the second asked nothing: the session's budget is spent
    assert all(r.total is None and r.failed == "skipped" for r in later)


def test_a_pointwise_judge_scores_on_0_to_1_unless_asked_for_its_own_scale(tmp_path, tiny_model):
    """The loopback judge scores an answer under 20 characters 5, a long one 1 (of 1-5)."""
    from configs_for_tests import api_judge, pipeline

    from rlaif.config import validate_pipeline
    from rlaif.rewards import Item, RewardService

    bad = "bad [[always500]]"
    items = [Item("Q?", "Short."), Item("Q?", "A long answer " * 6), Item("Q?", bad)]
    got = {}
    with LoopbackJudgeServer(models=("judge-model",)) as server:
        judge = api_judge(server.openai_url, rubric="ultrafeedback_helpfulness")
        for scale in ("unit", "rubric"):
            component = {"kind": "judge", "judge": "api", "scale": scale}
            cfg = validate_pipeline(pipeline(tmp_path, tiny_model, judges=[judge],
                                             reward={"components": [component]}))  # fmt: skip
            with RewardService(cfg) as service:
                got[scale] = [r.total for r in service.score_now(items)]
    rubric, unit = got["rubric"], got["unit"]
    assert rubric[0] > 4 and rubric[1] < 2 and rubric[2] == 3.0  # failed: the scale's middle
    assert unit[:2] == pytest.approx([(v - 1) / 4 for v in rubric[:2]]) and unit[2] == 0.5
