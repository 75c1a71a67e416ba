"""The PPO loop on the tiny model: on-policy first minibatch, KL to the frozen SFT model,
logged statistics, saved policy."""

import json

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from rlaif.config import PPOConfig
from rlaif.training.ppo import train_ppo


def test_ppo_loop(tmp_path, tiny_model):
    seen = []

    def reward(prompts, responses):
        seen.append((list(prompts), list(responses)))
        return [-len(r) / 20 for r in responses]

    prompts = Dataset.from_dict({"prompt": [f"Tell me about {i}" for i in range(6)]})
    cfg = PPOConfig(
        steps=3,
        rollout_batch_size=4,
        minibatch_size=2,
        max_new_tokens=6,
        learning_rate=1e-3,
        adaptive_kl=True,
        kl_target=0.1,
        kl_horizon=100,
    )
    log = train_ppo(prompts, cfg, model=str(tiny_model), reward_fn=reward, output_dir=tmp_path)
    assert len(log) == 3 and len(seen) == 3
    assert all(len(r) == 4 for _, r in seen)
    assert {
        "reward",
        "kl",
        "entropy",
        "clip_fraction",
        "value_loss",
        "response_length",
        "kl_coef",
    } <= set(log.column_names)
    assert log["first_ratio"] == pytest.approx([1.0] * 3)
    assert log["first_clip_fraction"] == [0.0] * 3
    assert log["kl"][0] == pytest.approx(0.0, abs=1e-5)  # the policy starts as the SFT model
    assert log["kl"][-1] > 0.0
    assert log["kl_coef"][-1] != cfg.kl_coef  # adaptive control moved the coefficient
    assert all(1 <= n <= 6 for n in log["response_length"])
    before = load_file(tiny_model / "model.safetensors")
    after = load_file(tmp_path / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)
    assert len(json.loads((tmp_path / "ppo_log.json").read_text())) == 3


def test_kl_estimate_is_zero_for_the_same_model_and_positive_after_change(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif.training.kl import estimate_kl

    prompts = ["Hi", "Tell me a story"]
    assert estimate_kl(tiny_model, tiny_model, prompts, max_new_tokens=5) == pytest.approx(
        0.0, abs=1e-5
    )
    changed = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        changed.lm_head.weight.mul_(3.0)  # sharpen the distribution
    changed.save_pretrained(tmp_path / "changed")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path / "changed")
    assert estimate_kl(tmp_path / "changed", tiny_model, prompts, max_new_tokens=5) > 0.01
