"""``train.<trainer>.trl``: any other argument of the TRL trainer's config class, passed
through, checked before anything runs, part of the config's hash."""

import json

import pytest
from datasets_for_tests import preferences

from rlaif.config import PipelineConfig, TrainConfig
from rlaif.errors import ConfigError
from rlaif.run.preflight import preflight
from rlaif.stages import train
from rlaif.training.trl_args import check_trl


def test_a_trl_argument_reaches_the_trainer(tmp_path, tiny_model):
    """The default schedule decays the learning rate; the passed-through one keeps it."""
    dpo = {"max_steps": 3, "per_device_train_batch_size": 2, "learning_rate": 1e-2}
    cfg = TrainConfig(dpo={**dpo, "trl": {"lr_scheduler_type": "constant"}})
    train(preferences(), cfg, model=str(tiny_model), output_dir=tmp_path)
    history = json.loads((tmp_path / "log_history.json").read_text())
    rates = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    assert rates == [1e-2] * 3


@pytest.mark.parametrize(
    ("section", "trl", "message"),
    [
        ("dpo", {"label_smothing": 0.1}, r"train.dpo.trl.label_smothing: not an argument of "
         r"trl.DPOConfig \(did you mean 'label_smoothing'\?\)"),
        ("dpo", {"beta": 0.5}, r"train.dpo.trl.beta: rlaif sets this argument \(set "
         r"train.dpo.beta instead\)"),
        ("grpo", {"output_dir": "x"}, r"train.grpo.trl.output_dir: rlaif sets this argument "
         r"\(it follows from the pipeline's settings\)"),
        ("dpo", {"label_smoothing": "lots"}, r"train.dpo.trl.label_smoothing: 'lots' is not a "
         r"valid value"),
        ("reward_model", {"lr_scheduler_type": "sideways"}, r"train.reward_model.trl: "
         r"trl.RewardConfig refuses it: sideways is not a valid SchedulerType"),
    ],
)  # fmt: skip
def test_bad_trl_arguments_are_refused_naming_the_field(section, trl, message):
    with pytest.raises(ConfigError, match=message):
        check_trl(TrainConfig(**{section: {"trl": trl}}))


def test_preflight_checks_them_before_anything_runs_and_they_are_part_of_the_hash(tiny_model):
    bad = PipelineConfig(name="t", model=str(tiny_model), train={"grpo": {"trl": {"nope": 1}}})
    preflight(bad, stages=["sample"])  # sampling trains nothing
    with pytest.raises(ConfigError, match="train.grpo.trl.nope: not an argument"):
        preflight(bad, stages=["evaluate"])  # which may train first
    good = PipelineConfig(name="t", train={"grpo": {"trl": {"loss_type": "dr_grpo"}}})
    check_trl(good.train)
    assert good.hash() != PipelineConfig(name="t").hash()
