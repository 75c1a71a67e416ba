from pathlib import Path

import pytest

from rlaif.config import PipelineConfig, load_pipeline, validate_pipeline
from rlaif.errors import ConfigError
from rlaif.models.loading import resolve_model
from rlaif.pipelines import accelerate_config_path, builtin_pipelines


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipe.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_file_line_field_and_suggests(tmp_path):
    path = write(tmp_path, "name: t\nsample:\n  n: 2\n  temprature: 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert f"{path}:4: sample.temprature: unknown key (did you mean 'temperature'?)" in str(
        err.value
    )


def test_unknown_key_inside_a_judge_names_its_line(tmp_path):
    path = write(
        tmp_path, "name: t\njudge:\n  judges:\n    - backend: transformers\n      rubrc: concise\n"
    )
    with pytest.raises(ConfigError) as err:
        load_pipeline(path)
    assert f"{path}:5: judge.judges.0.rubrc: unknown key (did you mean 'rubric'?)" in str(err.value)


def test_malformed_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "name: t\nsample:\n  n: 2\n   max_new_tokens: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: invalid YAML"):
        load_pipeline(path)


def test_bad_value_names_field(tmp_path):
    path = write(tmp_path, "name: t\nsample:\n  n: 0\n")
    with pytest.raises(ConfigError, match=r"pipe.yaml:3: sample.n: Input should be greater"):
        load_pipeline(path)


def test_missing_name_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="name: Field required"):
        load_pipeline(write(tmp_path, "sample:\n  n: 2\n"))


def test_overrides_set_nested_and_list_items(tmp_path):
    path = write(tmp_path, "name: t\njudge:\n  judges:\n    - name: a\n      rubric: concise\n")
    cfg = load_pipeline(
        path, ["sample.n=7", "judge.judges.0.rubric=helpful_harmless", "train.learning_rate=1e-5"]
    )
    assert cfg.sample.n == 7
    assert cfg.judge.judges[0].rubric == "helpful_harmless"
    assert cfg.train.dpo.learning_rate == pytest.approx(1e-5)


def test_bad_override_is_rejected(tmp_path):
    path = write(tmp_path, "name: t\n")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_pipeline(path, ["sample.n"])
    with pytest.raises(ConfigError, match="sample.nn: unknown key"):
        load_pipeline(path, ["sample.nn=3"])


def test_duplicate_judge_names_rejected(tmp_path):
    path = write(tmp_path, "name: t\njudge:\n  judges:\n    - name: a\n    - name: a\n")
    with pytest.raises(ConfigError, match="repeated: a"):
        load_pipeline(path)


def test_config_hash_tracks_content():
    a = PipelineConfig(name="x")
    assert a.hash() == PipelineConfig(name="x").hash()
    assert a.hash() != PipelineConfig(name="x", sample={"n": 5}).hash()


def test_keys_added_since_a_run_was_named_leave_its_hash_alone_at_their_defaults():
    judge = {"backend": "python", "callable": "m:f"}
    named = PipelineConfig.model_validate({"name": "h", "judge": {"judges": [judge]}})
    # computed by the release before calibration and judge weights existed
    before = "05c1f29b74ff29ed783a876642e37ff8ba77ba2d737ce9125b35d25fe4f0e06f"
    assert named.hash() == before
    explicit = {"judges": [{**judge, "calibration": None}]}
    same = {"name": "h", "judge": explicit, "aggregate": {"judge_weights": "equal"}}
    assert PipelineConfig.model_validate(same).hash() == before
    weighed = {**same, "aggregate": {"judge_weights": "agreement"}}
    assert PipelineConfig.model_validate(weighed).hash() != before
    calibrated = {"name": "h", "judge": {"judges": [{**judge, "calibration": "c.json"}]}}
    assert PipelineConfig.model_validate(calibrated).hash() != before
    for added in (  # rounds, latest-policy nights, soft labels, served sampling: set, they count
        {"rounds": {}},
        {"nightly": {"train": True, "policy": "latest"}},
        {"train": {"dpo": {"soft_labels": True}}},
        {"sample": {"backend": "openai", "server": {"base_url": "http://gpu:8000/v1"}}},
        {"judge": {**explicit, "permutations": 3}},
        {"judge": {**explicit, "checklists": {"min_items": 4}}},
    ):
        assert PipelineConfig.model_validate({**same, **added}).hash() != before
    listwise = {"judges": [{**judge, "mode": "listwise"}], "permutations": 2}
    assert PipelineConfig.model_validate({**same, "judge": listwise}).hash() != before
    pairwise = {"judges": [{**judge, "mode": "pairwise"}], "permutations": 2}
    assert PipelineConfig.model_validate({**same, "judge": pairwise}).hash() == before
    # a monitor named before stop.min_round_gain existed keeps its hash while it is unset
    watched = {"name": "h", "judge": {"judges": [judge]}, "train": {"monitor": {"stop": {}}}}
    watched["train"]["monitor"]["stop"]["max_kl"] = 5.0
    was = "9f85c7465243047a619092c3a29cdb19a3369f54a7f7ea98a65363cf09c2a818"
    assert PipelineConfig.model_validate(watched).hash() == was
    watched["train"]["monitor"]["stop"]["max_attacks"] = 0.0
    assert PipelineConfig.model_validate(watched).hash() != was
    watched["train"]["monitor"]["stop"].pop("max_attacks")
    watched["train"]["monitor"] |= {"judges": [judge], "stop": {"min_round_gain": 0.0}}
    assert PipelineConfig.model_validate(watched).hash() != was


def test_shipped_pipelines_validate_and_load_by_name():
    shipped = builtin_pipelines()
    assert {"quickstart", "nightly", "rule_dpo"} <= set(shipped)
    for name, path in shipped.items():
        assert load_pipeline(name) == load_pipeline(path)
    with pytest.raises(ConfigError, match=r"quickstrat: no such pipeline file.*quickstart"):
        load_pipeline("quickstrat")
    with pytest.raises(ConfigError, match="cannot read pipeline file"):
        load_pipeline("missing.yaml")  # a path is never taken for a name


def test_accelerate_config_by_name_or_path(tmp_path):
    assert accelerate_config_path("cpu").name == "cpu.yaml"
    mine = tmp_path / "mine.yaml"
    mine.write_text("num_processes: 1\n")
    assert accelerate_config_path(str(mine)) == mine
    with pytest.raises(ConfigError, match="'gpu9' is neither a file nor a shipped one"):
        validate_pipeline({"train": {"accelerate_config": "gpu9"}})


def test_unknown_model_reference_is_named():
    with pytest.raises(ConfigError, match=r"judge 'j'.model: unknown model reference 'no-such"):
        resolve_model("no-such-model-xyz", field="judge 'j'.model")
    with pytest.raises(ConfigError, match="unknown model reference 'nobody/nothing'"):
        resolve_model("nobody/nothing")


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="without a config.json"):
        resolve_model(str(tmp_path))


def test_retired_flush_keys_are_accepted_with_a_warning(caplog):
    old = {"name": "x", "judge": {"flush_every": 7, "flush_seconds": 1.0}}
    with caplog.at_level("WARNING", logger="rlaif.config"):
        cfg = PipelineConfig.model_validate(old)
    assert cfg.hash() == PipelineConfig(name="x").hash()  # they change nothing
    assert "flush_every and judge.flush_seconds are no longer used" in caplog.text


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: t\nsample:\n  n: 2\n  max_new_tokens: 8\n  n: 4\n")
    twice = r"p.yaml:5: invalid YAML: duplicate key 'n' \(first given on line 3\)"
    with pytest.raises(ConfigError, match=twice):
        load_pipeline(path)
    path.write_text("name: t\n")
    with pytest.raises(ConfigError, match="--set 'sample={a: 1, a: 2}'.*duplicate key 'a'"):
        load_pipeline(path, overrides=["sample={a: 1, a: 2}"])


def test_an_override_that_is_not_yaml_says_which(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: t\n")
    with pytest.raises(ConfigError, match=r"--set 'sample.n=\[1,': the value is not valid YAML"):
        load_pipeline(path, overrides=["sample.n=[1,"])
