"""The whole loop through ``Pipeline`` and the CLI, on the tiny model with fast judges."""

import pytest
import yaml
from cli_runner import run_cli
from datasets import load_from_disk

from rlaif import Pipeline
from rlaif.errors import ConfigError
from rlaif.run.run_dir import read_manifest


def test_stages_option_runs_missing_upstream(pipeline_yaml, tmp_path):
    run_dir = tmp_path / "partial"
    Pipeline.from_yaml(pipeline_yaml).run(stages=["sample", "judge"], run_dir=run_dir)
    manifest = read_manifest(run_dir)
    assert sorted(manifest["stages"]) == ["judge", "pair", "sample"]
    assert load_from_disk(str(run_dir / "judgments")).num_rows > 0
    assert not (run_dir / "preferences").exists()


def test_bad_input_fails_before_any_compute(pipeline_yaml, tmp_path):
    cfg = yaml.safe_load(pipeline_yaml.read_text())
    cfg["prompts"]["prompt_column"] = "question"
    pipeline_yaml.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="no prompt column 'question'"):
        Pipeline.from_yaml(pipeline_yaml).run()
    assert not (tmp_path / "outputs").exists()
    with pytest.raises(ConfigError, match="unknown rubric 'nope'"):
        Pipeline.from_yaml(
            pipeline_yaml, ["prompts.prompt_column=prompt", "judge.judges.1.rubric=nope"]
        ).run()
    with pytest.raises(ConfigError, match="unknown stage"):
        Pipeline.from_yaml(pipeline_yaml, ["prompts.prompt_column=prompt"]).run(stages=["smaple"])


def test_cli_reports_config_errors_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsampel:\n  n: 2\n")
    done = run_cli("run", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{bad}:2: sampel: unknown key (did you mean 'sample'?)" in done.stderr
    assert "Traceback" not in done.stderr
    missing = run_cli("status", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 2 and "no manifest.json" in missing.stderr


def test_self_preference_warning(pipeline_yaml, tiny_model, caplog):
    from rlaif.run.preflight import preflight

    cfg = Pipeline.from_yaml(pipeline_yaml).config
    with caplog.at_level("WARNING", logger="rlaif"):
        preflight(cfg, stages=["sample"])  # sampling asks no judge: nothing said of them
    assert "judge 'tiny'" not in caplog.text
    with caplog.at_level("WARNING", logger="rlaif"):
        preflight(cfg, stages=["judge"])
    assert "judge 'tiny' is the policy model itself" in caplog.text
    assert "judge 'rule'" not in caplog.text


def test_d_rlaif_needs_a_pointwise_judge(pipeline_yaml, tmp_path):
    from rlaif.judges import Budget
    from rlaif.judging.reward import PointwiseReward
    from rlaif.judging.store import JudgmentStore

    judges = Pipeline.from_yaml(pipeline_yaml).config.judge  # [python rule, tiny "concise"]
    concise = judges.model_copy(update={"judges": judges.judges[1:]})
    with JudgmentStore(tmp_path / "j.sqlite") as store, pytest.raises(ConfigError, match="must be"):
        PointwiseReward(concise, store, Budget())
