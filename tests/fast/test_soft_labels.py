"""Soft-label DPO (``train.dpo.soft_labels``): each pair's ``p_chosen`` is its target."""

import pytest
import torch
from datasets import Dataset
from pydantic import ValidationError
from safetensors.torch import load_file

from rlaif.config import DpoConfig, TrainConfig
from rlaif.errors import ConfigError
from rlaif.stages import train


def preferences(p_chosen: float, n: int = 4) -> Dataset:
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Say hi {i}"}],
                "chosen": [{"role": "assistant", "content": "Hi."}],
                "rejected": [{"role": "assistant", "content": "Hello there, how are you?"}],
                "p_chosen": p_chosen,
            }
            for i in range(n)
        ]
    )


def weights(tmp_path, tiny_model, p_chosen: float, soft: bool) -> dict[str, torch.Tensor]:
    out = tmp_path / f"{p_chosen}-{soft}"
    dpo = DpoConfig(
        max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2, soft_labels=soft
    )
    train(preferences(p_chosen), TrainConfig(dpo=dpo), model=str(tiny_model), output_dir=out)
    return load_file(out / "model" / "model.safetensors")


def moved(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_the_target_is_each_pairs_confidence(tmp_path, tiny_model):
    start = load_file(tiny_model / "model.safetensors")
    hard = weights(tmp_path, tiny_model, 0.5, soft=False)
    assert moved(hard, start) > 1e-3  # hard labels push every pair toward chosen
    unsure = weights(tmp_path, tiny_model, 0.5, soft=True)
    assert moved(unsure, start) < 1e-6  # a coin flip asks for no margin: nothing moves
    sure = weights(tmp_path, tiny_model, 1.0, soft=True)
    assert moved(sure, hard) < 1e-5  # a sure label is the hard loss exactly


def test_soft_labels_need_the_sigmoid_loss_and_the_column(tmp_path, tiny_model):
    with pytest.raises(ValidationError, match="soft_labels: needs loss_type 'sigmoid'"):
        DpoConfig(soft_labels=True, loss_type="ipo")
    cfg = TrainConfig(dpo=DpoConfig(soft_labels=True))
    with pytest.raises(ConfigError, match="lacks column.*p_chosen"):
        train(
            preferences(0.9).remove_columns("p_chosen"),
            cfg,
            model=str(tiny_model),
            output_dir=tmp_path,
        )
