"""``sample.system_prompt`` reaches every place a prompt is shown to a model: sampling, the
preference dataset (so DPO and the reward model train on it), PPO rollouts, reward scoring,
evaluation and the KL estimate."""

import importlib

from configs_for_tests import pipeline
from datasets import load_from_disk

import rlaif.chat
from rlaif import Pipeline
from rlaif.config import validate_pipeline

SYSTEM = "You are a pirate. Answer every question like one."


def test_the_system_prompt_is_seen_by_every_stage(tmp_path, tiny_model, monkeypatch):
    shown: list[str | None] = []
    original = rlaif.chat.chat

    def spy(prompt, system_prompt=None):
        shown.append(system_prompt)
        return original(prompt, system_prompt)

    # every stage builds its conversations through rlaif.chat.chat
    monkeypatch.setattr(rlaif.chat, "chat", spy)
    for module in ("rlaif.stages.sample", "rlaif.training.reward_model"):
        monkeypatch.setattr(importlib.import_module(module), "chat", spy)
    config = pipeline(
        tmp_path,
        tiny_model,
        sample={"system_prompt": SYSTEM},
        prompts={"limit": 8, "eval_size": 2},
        train={
            "method": "rm_ppo",
            "reward_model": {"max_steps": 1, "eval_fraction": 0.0},
            "ppo": {"steps": 1, "rollout_batch_size": 2, "minibatch_size": 2, "max_new_tokens": 4},
        },
        evaluate={"max_new_tokens": 4, "bootstrap": 100},
    )
    result = Pipeline(validate_pipeline(config)).run(run_dir=tmp_path / "run")
    prefs = load_from_disk(str(result.preferences_dir))
    assert all(p[0] == {"role": "system", "content": SYSTEM} for p in prefs["prompt"])
    assert all(p[1]["role"] == "user" for p in prefs["prompt"])
    # sampling (train and both evaluation models), PPO rollouts, reward scoring, the KL estimate
    prompts = len(load_from_disk(str(result.run_dir / "prompts" / "train")))
    assert len(shown) >= prompts + 2 * 2 + 2 + 2 + 2
    assert set(shown) == {SYSTEM}
