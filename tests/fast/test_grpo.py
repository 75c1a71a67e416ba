"""``train.method: grpo``: trl's GRPOTrainer with the pipeline's judges as a live reward,
through the judge stage's store (a completion judged before is not paid again)."""

import json

import judges_for_tests as jt
import pytest
from datasets import Dataset
from pydantic import ValidationError

from rlaif.config import GrpoConfig, JudgeConfig, PythonJudgeConfig, TrainConfig
from rlaif.judges import Budget
from rlaif.judging.reward import JudgeReward
from rlaif.judging.store import JudgmentStore
from rlaif.stages import train
from rlaif.training.grpo import grpo_prompts


def judges():
    return JudgeConfig(
        judges=[PythonJudgeConfig(name="short", callable="judges_for_tests:prefer_shorter")]
    )


def preferences(n=4):
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Say hi {i}"}],
                "chosen": [{"role": "assistant", "content": "Hi there."}],
                "rejected": [{"role": "assistant", "content": "Hello there, how are you?"}],
            }
            for i in range(n)
        ]
    )


def test_the_reward_is_the_judges_verdict_against_the_sft_answers(tmp_path):
    jt.CALLS.clear()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        reward = JudgeReward(judges(), store, Budget())
        args = {"prompt_text": ["q"] * 4, "baselines": [["a medium answer", "tiny"]] * 4}
        texts = ("short", "x" * 40, "short", "ok")
        completions = [[{"role": "assistant", "content": c}] for c in texts]
        got = reward([None] * 4, completions, **args)
        # the shorter answer wins 0.9: "short" beats one SFT answer, "ok" both, "xxx..." none
        assert got == pytest.approx([0.5, 0.1, 0.5, 0.9])
        assert len(jt.CALLS) == 12  # 3 distinct completions x 2 SFT answers x 2 orders
        again = reward([None] * 4, completions, **args)
    assert again == got and len(jt.CALLS) == 12
    assert reward.steps[0]["judgments"] == 12 and reward.steps[0]["cache_hit_rate"] == 0.0
    assert reward.steps[1]["cache_hit_rate"] == 1.0 and reward.steps[1]["cost_usd"] == 0.0


def test_each_prompt_once_with_its_sft_answer():
    rows = grpo_prompts(Dataset.from_list([*preferences(2).to_list(), *preferences(2).to_list()]))
    assert rows["prompt_text"] == ["Say hi 0", "Say hi 1"]
    assert rows["baselines"] == [["Hi there.", "Hello there, how are you?"]] * 2
    assert rows["prompt"][0] == [{"role": "user", "content": "Say hi 0"}]


def test_grpo_trains_the_policy_and_pays_each_judgment_once(tmp_path, tiny_model):
    cfg = TrainConfig(
        method="grpo",
        grpo={
            "max_steps": 2,
            "num_generations": 2,
            "per_device_train_batch_size": 4,
            "max_completion_length": 6,
            "learning_rate": 1e-3,
        },
    )
    store = tmp_path / "judgments.sqlite"
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        log = train(
            preferences(), cfg, model=str(tiny_model), output_dir=out, judges=judges(), store=store
        )
        runs.append(json.loads((out / "judge_log.json").read_text()))
        assert (out / "model" / "model.safetensors").is_file()
    assert "rewards/judge/mean" in log.column_names
    first, second = runs
    assert len(first) == 2 and all(step["judgments"] > 0 for step in first)
    assert first[0]["cache_hit_rate"] < 1.0
    # the same seed samples the same completions: the second run's judgments are all stored
    assert all(step["cache_hit_rate"] == 1.0 for step in second)


def test_a_step_takes_whole_groups():
    with pytest.raises(ValidationError, match="multiple of num_generations"):
        GrpoConfig(num_generations=4, per_device_train_batch_size=6)


def test_grpo_rewards_the_components_and_the_monitor_sees_each(tmp_path, tiny_model):
    from rlaif.config import MonitorConfig, RewardConfig

    cfg = TrainConfig(
        method="grpo",
        grpo={"max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 4,
              "max_completion_length": 6, "learning_rate": 1e-3},
        monitor=MonitorConfig(every_steps=1, max_new_tokens=6),
    )  # fmt: skip
    reward = RewardConfig(
        components=[
            {"kind": "judge", "judge": "short"},
            {"kind": "regex", "name": "says_hi", "pattern": "(?i)hi", "normalize": "group"},
        ]
    )
    out = tmp_path / "out"
    log = train(
        preferences(), cfg, model=str(tiny_model), output_dir=out, judges=judges(),
        store=tmp_path / "j.sqlite", reward=reward, references={}, monitor_prompts=["Hi?"],
    )  # fmt: skip
    assert {"reward/short", "reward/says_hi"} <= set(log.column_names)
    steps = [json.loads(x) for x in (out / "reward_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 1]
    assert set(steps[0]["components"]) == {"short", "says_hi"}
    checks = [json.loads(x) for x in (out / "monitor.jsonl").read_text().splitlines()]
    assert set(checks[-1]["components"]) == {"short", "says_hi"}
