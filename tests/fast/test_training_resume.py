"""Checkpoints and resume on the tiny model: a run stopped after step k and started again ends
with exactly the weights and log of a run that was never stopped (CPU is deterministic)."""

import json
import logging

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from rlaif.config import PPOConfig, RewardModelConfig, TrainConfig
from rlaif.stages import train
from rlaif.training.ppo import train_ppo

PROMPTS = Dataset.from_dict({"prompt": [f"Tell me about {i}" for i in range(6)]})
PPO = PPOConfig(
    steps=4,
    rollout_batch_size=4,
    minibatch_size=2,
    max_new_tokens=6,
    learning_rate=1e-3,
    adaptive_kl=True,
    kl_target=0.1,
    kl_horizon=100,
)


class Crash(RuntimeError):
    pass


def shorter(prompts, responses):
    return [-len(r) / 20 for r in responses]


def crashing_at(call: int):
    calls = []

    def reward(prompts, responses):
        calls.append(1)
        if len(calls) == call:
            raise Crash(f"reward call {call}")
        return shorter(prompts, responses)

    return reward, calls


def weights(folder):
    return load_file(folder / "model" / "model.safetensors")


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ppo_resumes_to_the_same_weights_and_log(tmp_path, tiny_model):
    whole = train_ppo(
        PROMPTS,
        PPO,
        model=str(tiny_model),
        reward_fn=shorter,
        output_dir=tmp_path / "whole",
        save_steps=1,
    )
    ckpt = tmp_path / "ckpt"
    reward, calls = crashing_at(3)
    with pytest.raises(Crash):
        train_ppo(
            PROMPTS,
            PPO,
            model=str(tiny_model),
            reward_fn=reward,
            output_dir=tmp_path / "first",
            checkpoint_dir=ckpt,
            save_steps=1,
        )
    assert sorted(p.name for p in (ckpt / "ppo").iterdir()) == ["step-1", "step-2"]
    (ckpt / "ppo" / ".step-3.tmp").mkdir()  # a save cut short: must be ignored
    resumed_calls = []

    def counting(prompts, responses):
        resumed_calls.append(1)
        return shorter(prompts, responses)

    resumed = train_ppo(
        PROMPTS,
        PPO,
        model=str(tiny_model),
        reward_fn=counting,
        output_dir=tmp_path / "second",
        checkpoint_dir=ckpt,
        save_steps=1,
    )
    assert len(resumed_calls) == 2  # steps 3 and 4 only
    assert resumed.to_list() == whole.to_list()
    assert [e["step"] for e in resumed] == [1, 2, 3, 4]
    assert_same_weights(weights(tmp_path / "second"), weights(tmp_path / "whole"))
    # the last two are kept; the final step saves the model, not a checkpoint
    assert sorted(p.name for p in (ckpt / "ppo").iterdir()) == ["step-2", "step-3"]
    saved = json.loads((ckpt / "ppo" / "step-3" / "ppo_log.json").read_text())
    assert saved == whole.to_list()[:3]


def test_dpo_resumes_to_the_same_weights_and_log(tmp_path, tiny_model, monkeypatch, caplog):
    from trl import DPOTrainer

    cfg = TrainConfig(max_steps=4, per_device_train_batch_size=2, learning_rate=1e-2, save_steps=1)
    data = preferences(8)
    whole = train(data, cfg, model=str(tiny_model), output_dir=tmp_path / "whole")
    ckpt = tmp_path / "ckpt"
    original = DPOTrainer.training_step

    def crash_after_two(self, *args, **kwargs):
        if self.state.global_step == 2:
            raise Crash("step 3")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DPOTrainer, "training_step", crash_after_two)
    with pytest.raises(Crash):
        train(data, cfg, model=str(tiny_model), output_dir=tmp_path / "first", checkpoint_dir=ckpt)
    monkeypatch.undo()
    assert sorted(p.name for p in (ckpt / "dpo").glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
    ]
    with caplog.at_level(logging.INFO, logger="rlaif"):
        resumed = train(
            data, cfg, model=str(tiny_model), output_dir=tmp_path / "second", checkpoint_dir=ckpt
        )
    assert "resuming from" in caplog.text and "checkpoint-2" in caplog.text
    history = json.loads((tmp_path / "second" / "log_history.json").read_text())
    assert [e["step"] for e in history if "loss" in e] == [1, 2, 3, 4]
    assert [x for x in resumed["loss"] if x is not None] == pytest.approx(
        [x for x in whole["loss"] if x is not None]
    )
    assert_same_weights(weights(tmp_path / "second"), weights(tmp_path / "whole"))


def test_rm_ppo_reuses_a_finished_reward_model_and_ppo_checkpoint(tmp_path, tiny_model, caplog):
    cfg = TrainConfig(
        method="rm_ppo",
        save_steps=1,
        reward_model=RewardModelConfig(max_steps=2, eval_fraction=0.25),
        ppo=PPO.model_copy(update={"steps": 2}),
    )
    ckpt = tmp_path / "ckpt"
    first = train(
        preferences(8),
        cfg,
        model=str(tiny_model),
        output_dir=tmp_path / "first",
        prompts=PROMPTS,
        checkpoint_dir=ckpt,
    )
    rm_folder = ckpt / "reward_model"
    assert (rm_folder / "final").is_dir()
    assert not list(rm_folder.glob("checkpoint-*"))  # the trainer's checkpoints are freed
    with caplog.at_level(logging.INFO, logger="rlaif"):
        again = train(
            preferences(8),
            cfg,
            model=str(tiny_model),
            output_dir=tmp_path / "second",
            prompts=PROMPTS,
            checkpoint_dir=ckpt,
        )
    assert "reward model: reusing" in caplog.text
    assert "ppo: resumed" in caplog.text
    assert again.to_list() == first.to_list()
    assert_same_weights(weights(tmp_path / "second"), weights(tmp_path / "first"))
    assert (tmp_path / "second" / "reward_model_metrics.json").read_text() == (
        tmp_path / "first" / "reward_model_metrics.json"
    ).read_text()


def preferences(n):
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Say hi {i}"}],
                "chosen": [{"role": "assistant", "content": "Hi."}],
                "rejected": [{"role": "assistant", "content": "Hello there, how are you?"}],
                "margin": 0.6,
            }
            for i in range(n)
        ]
    )
