import json

import pytest
from datasets import Dataset
from datasets_for_tests import preferences

from rlaif.config import EvaluateConfig, JudgeConfig, PythonJudgeConfig, SampleConfig, TrainConfig
from rlaif.errors import ConfigError
from rlaif.judging.store import JudgmentStore
from rlaif.stages import evaluate, train
from rlaif.stages.evaluate import win_rate


def test_dpo_trains_saves_and_logs(tmp_path, tiny_model):
    cfg = TrainConfig(max_steps=3, per_device_train_batch_size=2, learning_rate=1e-2)
    log = train(preferences(), cfg, model=str(tiny_model), output_dir=tmp_path)
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "model" / "tokenizer.json").is_file()
    losses = [x for x in log["loss"] if x is not None]
    assert len(losses) == 3
    assert losses[-1] < losses[0]  # chosen gets likelier than rejected
    history = json.loads((tmp_path / "log_history.json").read_text())
    assert history[-1]["step"] == 3


def test_train_rejects_bad_datasets(tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="lacks column"):
        train(
            preferences().remove_columns("rejected"),
            TrainConfig(),
            model=str(tiny_model),
            output_dir=tmp_path,
        )
    with pytest.raises(ConfigError, match="is empty"):
        train(preferences().select([]), TrainConfig(), model=str(tiny_model), output_dir=tmp_path)


def test_win_rate_counts_ties_half_and_brackets_the_estimate():
    result = win_rate([0.9, 0.8, 0.2, 0.5, None], bootstrap=500)
    assert (result.wins, result.ties, result.losses, result.unjudged) == (2, 1, 1, 1)
    assert result.win_rate == pytest.approx(2.5 / 4)
    assert result.soft_win_rate == pytest.approx((0.9 + 0.8 + 0.2 + 0.5) / 4)
    assert result.ci_low <= result.win_rate <= result.ci_high
    assert 0.0 <= result.ci_low < result.ci_high <= 1.0
    assert win_rate([0.9] * 10).ci_low == 1.0
    assert win_rate([None]).n == 0


def test_evaluate_policy_against_reference(tmp_path, tiny_model, embedded_model):
    """Tiny model vs the real SmolLM2, judged by a length rule: the per-prompt outcome must
    follow the rule, and identical responses are ties that cost no judgment."""
    held_out = Dataset.from_dict(
        {"prompt_id": ["a", "b"], "prompt": ["Hi?", "Why sky blue?"], "category": ["", ""]}
    )
    judges = JudgeConfig(judges=[PythonJudgeConfig(callable="judges_for_tests:prefer_shorter")])
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = evaluate(
            held_out,
            EvaluateConfig(max_new_tokens=8),
            policy=str(tiny_model),
            reference=str(embedded_model),
            sample_cfg=SampleConfig(backend="transformers", dtype="float32"),
            judge_cfg=judges,
            store=store,
        )
        same = evaluate(
            held_out,
            EvaluateConfig(max_new_tokens=8),
            policy=str(tiny_model),
            reference=str(tiny_model),
            sample_cfg=SampleConfig(backend="transformers", dtype="float32"),
            judge_cfg=judges,
            store=store,
        )
        judged = len(store)
    for row in out:
        mine, theirs = len(row["policy_response"]), len(row["reference_response"])
        expected = 0.5 if mine == theirs else 0.9 if mine < theirs else 0.1
        assert row["p_policy"] == pytest.approx(expected)
    assert same["identical"] == [True, True] and same["p_policy"] == [0.5, 0.5]
    assert judged == 2 * sum(not x for x in out["identical"])
