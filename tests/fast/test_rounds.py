"""On-policy rounds: each round samples from and trains from the policy the round before it
trained; the chain is recorded, evaluated by round, resumable, and stops when it stops
gaining."""

import json

import pytest
from cli_runner import run_cli
from configs_for_tests import pipeline, rounds_config, write

from rlaif.config import validate_pipeline
from rlaif.errors import ConfigError
from rlaif.ops.rounds import run_rounds
from rlaif.run.runner import Pipeline


def test_a_round_that_gains_too_little_ends_the_chain(tmp_path, tiny_model):
    stop = {"min_gain": 0.5}  # a round must win every held-out prompt to go on
    config = rounds_config(tmp_path, tiny_model, count=3, stop_when=stop)
    # a judge that always prefers the answer shown first: P(policy wins) is 0.5 in both orders
    # together, so no round can gain (a rule a policy could satisfy on both held-out prompts
    # would let the chain go on now and then)
    config["judge"]["judges"] = [{"backend": "python", "callable": "judges_for_tests:first_always"}]
    cfg = validate_pipeline(config)
    result = run_rounds(Pipeline(cfg), tmp_path / "chain")
    assert len(result.rounds) == 1
    assert "round 1 gained" in result.stopped and "min_gain 0.5" in result.stopped
    assert not (tmp_path / "chain" / "round-2").exists()
    saved = json.loads((tmp_path / "chain" / "rounds.json").read_text())
    assert saved["stopped"] == result.stopped


def test_rounds_config_errors_say_what_to_change(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="rounds.reference: 'sft' needs train.method dpo"):
        validate_pipeline(pipeline(tmp_path, tiny_model, rounds={}, train={"method": "grpo"}))
    with pytest.raises(ConfigError, match="nightly.policy: 'latest' needs nightly.train"):
        validate_pipeline(pipeline(tmp_path, tiny_model, nightly={"policy": "latest"}))
    cfg = write(tmp_path, rounds_config(tmp_path, tiny_model))
    done = run_cli("run", str(cfg), "--stages", "sample")
    assert done.returncode == 2
    assert "a pipeline with rounds runs every stage" in done.stderr
    estimate = run_cli("run", str(cfg), "--dry-run")
    assert estimate.returncode == 0, estimate.stderr
    assert "round 1 of 2; each later round asks about as many" in estimate.stdout
