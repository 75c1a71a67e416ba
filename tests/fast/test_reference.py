"""Rubrics that judge against a reference answer carried from the prompt set."""

import json

import pytest
import yaml
from datasets import Dataset

from rlaif import Pipeline
from rlaif.config import JudgeConfig, PairConfig, PromptsConfig, TransformersJudgeConfig
from rlaif.errors import ConfigError
from rlaif.judging.store import JudgmentStore
from rlaif.prompts import load_prompts
from rlaif.stages import judge, pair


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "math.jsonl"
    rows = [
        {"id": f"m{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_reference_flows_from_prompts_to_the_judge(prompts_file, tmp_path, tiny_model):
    cfg = PromptsConfig(
        source=str(prompts_file), prompt_column="question", reference_column="answer"
    )
    prompts = load_prompts(cfg)
    assert prompts["reference"][:2] == ["0", "2"]
    with pytest.raises(ConfigError, match="no reference column 'solution'"):
        load_prompts(cfg.model_copy(update={"reference_column": "solution"}))
    samples = prompts.select(range(2)).add_column("responses", [["4", "5"], ["6", "7"]])
    pairs = pair(samples, PairConfig())
    assert pairs["reference"] == ["0", "2"]
    judges = JudgeConfig(
        judges=[
            TransformersJudgeConfig(
                model=str(tiny_model), rubric="reasoning_reference", dtype="float32"
            )
        ]
    )
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs, judges, store=store)
        changed = judge(
            Dataset.from_dict({**pairs.to_dict(), "reference": ["9", "9"]}), judges, store=store
        )
    assert set(out["status"]) == {"ok"}
    # the reference is part of what was asked: another reference is another judgment
    assert not any(changed["cached"])
    assert set(out["key"]).isdisjoint(changed["key"])


def test_reference_rubric_without_reference_column_fails_early(prompts_file, tmp_path, tiny_model):
    config = {
        "name": "ref",
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "out"),
        "prompts": {"source": str(prompts_file), "prompt_column": "question", "eval_size": 2},
        "judge": {"judges": [{"model": str(tiny_model), "rubric": "reasoning_reference"}]},
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="prompts.reference_column is not set"):
        Pipeline.from_yaml(path).run()
    assert not (tmp_path / "out").exists()
