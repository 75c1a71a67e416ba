"""``train.report_to``: DPO, the reward model and PPO send their metrics to the trackers
asked for; TensorBoard (offline) is read back here."""

import pytest
from datasets import Dataset
from datasets_for_tests import preferences
from trackers_for_tests import scalars

from rlaif.config import PipelineConfig, PPOConfig, TrainConfig
from rlaif.errors import ConfigError
from rlaif.run.preflight import preflight
from rlaif.run.run_dir import RunDir
from rlaif.run.runner import _Run
from rlaif.stages import train
from rlaif.training.ppo import train_ppo


def test_dpo_metrics_reach_tensorboard(tmp_path, tiny_model):
    cfg = TrainConfig(
        report_to=["tensorboard"],
        dpo={"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-2},
    )
    log = train(preferences(), cfg, model=str(tiny_model), output_dir=tmp_path)
    runs = list((tmp_path / "checkpoints" / "dpo" / "tensorboard").rglob("events.out.*"))
    assert runs, "no TensorBoard event file"
    got = scalars(runs[0].parent)
    losses = [x for x in log["loss"] if x is not None]
    assert got["train/loss"] == pytest.approx(losses, rel=1e-4)


def test_ppo_steps_reach_tensorboard(tmp_path, tiny_model):
    prompts = Dataset.from_dict({"prompt": [f"Tell me about {i}" for i in range(4)]})
    cfg = PPOConfig(steps=2, rollout_batch_size=2, minibatch_size=2, max_new_tokens=4)
    log = train_ppo(
        prompts,
        cfg,
        model=str(tiny_model),
        reward_fn=lambda prompts, responses: [-len(r) / 20 for r in responses],
        output_dir=tmp_path,
        report_to=["tensorboard"],
    )
    runs = list((tmp_path / "checkpoints" / "ppo" / "tensorboard").rglob("events.out.*"))
    got = scalars(runs[0].parent)
    assert got["reward"] == pytest.approx(log["reward"], rel=1e-5)
    assert got["kl"] == pytest.approx(log["kl"], abs=1e-6)


def test_a_tracker_that_is_not_installed_is_refused_before_anything_runs(tiny_model):
    cfg = PipelineConfig(name="t", model=str(tiny_model), train={"report_to": ["mlflow"]})
    with pytest.raises(ConfigError, match=r"train.report_to: mlflow is not installed"):
        preflight(cfg)


def test_trackers_change_neither_the_config_hash_nor_what_training_covers(tmp_path):
    """Adding a tracker to a config resumes the same run directory and retrains nothing."""
    plain = PipelineConfig(name="t")
    tracked = PipelineConfig(name="t", train={"report_to": ["tensorboard"]})
    assert tracked.train.report_to == ["tensorboard"]
    assert plain.hash() == tracked.hash()
    covered = []
    for cfg in (plain, tracked):
        run = _Run(cfg, RunDir(tmp_path), None)
        run.train_prompts = Dataset.from_dict({"prompt": ["hi"]})
        covered.append(run._covered_inputs({})["train"])
    assert covered[0] == covered[1]
