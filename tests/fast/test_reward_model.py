import json

import pytest
from datasets import Dataset

from rlaif.config import RewardModelConfig
from rlaif.errors import ConfigError
from rlaif.training.reward_model import RewardScorer, train_reward_model


def preferences(n=40):
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Say something kind, please ({i})"}],
                "chosen": [{"role": "assistant", "content": "You matter."}],
                "rejected": [
                    {
                        "role": "assistant",
                        "content": "Well, in a long and winding way, one might say... " * 3,
                    }
                ],
                "margin": 0.5,
                "p_chosen": 0.75,
            }
            for i in range(n)
        ]
    )


def test_reward_model_learns_a_rule_and_reports_heldout_accuracy(tmp_path, tiny_model):
    """RewardTrainer on the tiny model learns "the short answer wins" from 32 pairs (the real
    SmolLM2's reward model is trained in the evidence tier's RM + PPO proof)."""
    cfg = RewardModelConfig(max_steps=15, learning_rate=1e-3, eval_fraction=0.2)
    metrics = train_reward_model(preferences(), cfg, model=str(tiny_model), output_dir=tmp_path)
    assert metrics["heldout_pairs"] == 8 and metrics["train_pairs"] == 32
    assert metrics["heldout_accuracy"] >= 0.875  # 7 of 8: by chance about 1 time in 30
    assert json.loads((tmp_path / "reward_model_metrics.json").read_text()) == metrics
    scorer = RewardScorer(tmp_path / "reward_model")
    short, long = scorer.score(["Hi?", "Hi?"], ["You matter.", "Well, in a long way... " * 3])
    assert short > long


def test_lora_reward_model_is_merged_and_loadable(tmp_path, tiny_model):
    cfg = RewardModelConfig(max_steps=2, lora=True, lora_r=4, eval_fraction=0.25)
    metrics = train_reward_model(preferences(8), cfg, model=str(tiny_model), output_dir=tmp_path)
    assert metrics["heldout_pairs"] == 2
    assert (tmp_path / "reward_model" / "model.safetensors").is_file()
    assert not (tmp_path / "reward_model" / "adapter_config.json").exists()
    assert len(RewardScorer(tmp_path / "reward_model").score(["q"], ["a"])) == 1


def test_reward_model_needs_data(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="at least two preferences"):
        train_reward_model(
            preferences(1), RewardModelConfig(), model=str(tiny_model), output_dir=tmp_path
        )
