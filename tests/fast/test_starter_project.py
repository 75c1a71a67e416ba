"""``rlaif init``: the starter project validates from its own folder, and nothing is overwritten."""

import json

import pytest
from cli_runner import run_cli

from rlaif.config import load_pipeline
from rlaif.errors import ConfigError
from rlaif.pipelines.starter import STARTERS, write_project
from rlaif.prompts import load_prompts
from rlaif.rubrics import BUILTIN, load_rubric


def test_init_writes_a_project_that_loads_from_its_folder(tmp_path, monkeypatch):
    done = run_cli("init", tmp_path / "proj", "--from", "nightly", timeout=120)
    assert done.returncode == 0, done.stderr
    project = tmp_path / "proj"
    assert f"next: cd {project} && rlaif run pipeline.yaml" in done.stdout
    monkeypatch.chdir(project)
    cfg = load_pipeline("pipeline.yaml")
    assert cfg.name == "proj" and cfg.nightly.max_prompts == 40  # the nightly template's
    assert cfg.prompts.source == "prompts.jsonl"
    assert [j.rubric for j in cfg.judge.judges] == ["rubrics/my_rubric.jinja"]
    assert load_rubric("rubrics/my_rubric.jinja").sha256 == load_rubric("helpful_harmless").sha256
    prompts = load_prompts(cfg.prompts)
    lines = [json.loads(line) for line in (project / "prompts.jsonl").open()]
    assert len(prompts) == len(lines) == 40 and prompts["prompt"][0] == lines[0]["prompt"]
    cron = (project / "crontab.txt").read_text()
    assert f"cd {project} && " in cron and " nightly pipeline.yaml --log-json" in cron


def test_init_refuses_a_folder_with_files_and_an_unknown_template(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "pipeline.yaml").write_text("mine\n")
    done = run_cli("init", tmp_path / "proj", timeout=120)
    assert done.returncode == 2
    assert "exists and is not an empty folder" in done.stderr
    assert (tmp_path / "proj" / "pipeline.yaml").read_text() == "mine\n"
    done = run_cli("init", tmp_path / "other", "--from", "quickstrat", timeout=120)
    assert done.returncode == 2 and "--from quickstrat: not a starter pipeline" in done.stderr
    assert not (tmp_path / "other").exists()


def test_version_and_shipped_rubrics_from_the_cli():
    assert run_cli("--version", timeout=120).stdout.startswith("rlaif 0.1.0")
    listed = run_cli("rubrics", "list", timeout=120).stdout.splitlines()
    assert {line.split()[0] for line in listed} >= {p.stem for p in BUILTIN.glob("*.jinja")}


@pytest.mark.parametrize("name", STARTERS)
def test_every_starter_becomes_a_project(tmp_path, name):
    written = write_project(tmp_path / name, name)
    assert [p.relative_to(tmp_path / name).as_posix() for p in written] == [
        "pipeline.yaml", "rubrics/my_rubric.jinja", "prompts.jsonl", "crontab.txt"
    ]  # fmt: skip
    assert "rubric: rubrics/my_rubric.jinja" in written[0].read_text()
    with pytest.raises(ConfigError, match="--from rule_dpo: not a starter pipeline"):
        write_project(tmp_path / "rule", "rule_dpo")
