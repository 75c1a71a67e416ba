"""The pipeline's reward in a user's own ``trl.GRPOTrainer``: two steps on the tiny model, on a
plain dataset of the user's (text prompts with a reference column, and conversational prompts
without one), every judgment in the store, each component logged by TRL. (Killed and resumed
without paying twice: ``tests/evidence/test_trainer_rewards_resume.py``.)"""

import json

from cli_runner import stored
from configs_for_tests import write
from trl_script import reward_pipeline, run_script

from rlaif.report import write_report


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
