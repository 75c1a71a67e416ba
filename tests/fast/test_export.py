"""``rlaif export``: the preferences and prompts as OpenRLHF, verl and JSON-lines readers take
them, checked the way those readers use them."""

import json

import pandas as pd
import pytest
from cli_runner import run_cli
from configs_for_tests import pipeline, write
from datasets import load_from_disk
from transformers import AutoTokenizer

from rlaif.errors import ConfigError
from rlaif.ops.export import export
from rlaif.run.runner import Pipeline

CHECKLIST = [
    {"name": "cl", "backend": "python", "mode": "checklist",
     "callable": "judges_for_tests:checked_checklist"}
]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model):
    """A run to its preferences, scored by a checklist judge: its reward needs no label, so
    the held-out prompts (which no stage answered) may go without one."""
    tmp = tmp_path_factory.mktemp("export")
    cfg = pipeline(tmp, tiny_model, judges=CHECKLIST, sample={"system_prompt": "Be brief."})
    Pipeline.from_yaml(write(tmp, cfg)).run(stages=["aggregate"], run_dir=tmp / "run")
    return tmp / "run"


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_openrlhf_pairs_render_as_its_chat_template_reader_splits_them(
    run_dir, tmp_path, tiny_model
):
    done = run_cli("export", str(run_dir), "--format", "openrlhf", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    pairs = lines(tmp_path / "preferences.jsonl")
    preferences = load_from_disk(str(run_dir / "preferences"))
    assert len(pairs) == len(preferences) > 0
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for row in pairs:
        assert set(row) == {"prompt", "chosen", "rejected", "margin"}
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        # OpenRLHF (--apply_chat_template --prompt_key prompt) cuts the rendered prompt off
        # the rendered prompt + answer: the prompt must be a prefix of it
        head = tokenizer.apply_chat_template(
            row["prompt"], tokenize=False, add_generation_prompt=True
        )
        for side in ("chosen", "rejected"):
            assert row[side][0]["role"] == "assistant"
            full = tokenizer.apply_chat_template(row["prompt"] + row[side], tokenize=False)
            assert full.startswith(head) and row[side][0]["content"] in full[len(head) :]
    prompts = lines(tmp_path / "prompts.jsonl")
    assert len(prompts) == len(load_from_disk(str(run_dir / "prompts" / "train")))
    assert prompts[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    # the builtin prompts have no reference answers: each label is an answer the SFT gave
    samples = load_from_disk(str(run_dir / "samples"))
    first_answer = dict(
        zip(samples["prompt_id"], (r[0] for r in samples["responses"]), strict=True)
    )
    assert all(p["label"] == first_answer[p["prompt_id"]] for p in prompts)
    assert all(p["label"] for p in prompts)


def test_verl_parquet_has_its_rl_dataset_columns(run_dir, tmp_path, tiny_model):
    files = export(run_dir, "verl", tmp_path)
    names = [f.name for f in files]
    assert names == [
        "train.parquet", "test.parquet", "rlaif_http_reward.py", "rlaif_reward.py",
        "verl_grpo_judge.sh",
    ]  # fmt: skip
    recipe = (tmp_path / "verl_grpo_judge.sh").read_text()
    assert str(tmp_path) not in recipe  # the folder can move: paths are relative to it
    assert '"data.train_files=$DATA/train.parquet"' in recipe
    assert 'export RLAIF_REWARD_URL="${RLAIF_REWARD_URL:-http://127.0.0.1:8765}"' in recipe
    train = pd.read_parquet(tmp_path / "train.parquet")
    test = pd.read_parquet(tmp_path / "test.parquet")
    assert list(train.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    prompts = load_from_disk(str(run_dir / "prompts" / "train"))
    assert len(train) == len(prompts)
    assert len(test) == len(load_from_disk(str(run_dir / "prompts" / "heldout")))
    row = train.iloc[0]
    assert row["data_source"] == "rlaif/t" and row["ability"] == prompts[0]["category"]
    assert row["reward_model"]["style"] == "model"
    assert all(r["ground_truth"] for r in train["reward_model"])  # an SFT answer, never empty
    assert row["extra_info"]["split"] == "train" and test.iloc[0]["extra_info"]["split"] == "test"
    assert row["extra_info"]["question"] == prompts[0]["prompt"]  # what the verl shim sends
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rendered = tokenizer.apply_chat_template(list(row["prompt"]), tokenize=False)
    assert "Be brief." in rendered  # verl renders the prompt column with the chat template


def test_jsonl_keeps_every_column_and_bad_requests_are_named(run_dir, tmp_path):
    export(run_dir, "jsonl", tmp_path)
    preferences = load_from_disk(str(run_dir / "preferences"))
    rows = lines(tmp_path / "preferences.jsonl")
    assert rows == json.loads(json.dumps(preferences.to_list()))
    with pytest.raises(ConfigError, match="--format 'trl': one of openrlhf, verl, jsonl"):
        export(run_dir, "trl", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="manifest"):
        export(tmp_path / "empty", "jsonl", tmp_path / "out")


def test_an_export_whose_prompts_lack_labels_is_refused(tmp_path, tiny_model):
    """Stopped at aggregate, the held-out prompts have no answer to be labelled with, and the
    run's judge compares answers: verl's validation would get errors, so the export says so
    (JSON lines carry no reward and go through); a pointwise judge needs no label."""
    cfg = pipeline(tmp_path, tiny_model, prompts={"limit": 6, "eval_size": 2})
    Pipeline.from_yaml(write(tmp_path, cfg)).run(stages=["aggregate"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="2 held-out prompt\\(s\\) have no label.*evaluate stage"):
        export(tmp_path / "run", "verl", tmp_path / "v")
    assert export(tmp_path / "run", "jsonl", tmp_path / "j")
    with pytest.raises(ConfigError, match="--reward-url: .*http://host:port"):
        export(tmp_path / "run", "jsonl", tmp_path / "j", reward_url="10.0.0.5:8765")
    done = run_cli(
        "export", str(tmp_path / "run"), "--format", "openrlhf", "--out", str(tmp_path / "o"),
        "--reward-url", "http://10.0.0.5:8765/get_reward/",
    )  # fmt: skip
    assert done.returncode == 2 and "have no label" in done.stderr
