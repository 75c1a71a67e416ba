import json

import pytest
from datasets import Dataset, DatasetDict

from rlaif.config import PromptsConfig
from rlaif.errors import ConfigError
from rlaif.prompts import BUILTIN, load_prompts, split_prompts


def test_builtin_set_has_ids_and_categories():
    rows = [json.loads(line) for line in BUILTIN["builtin"].read_text().splitlines()]
    assert len(rows) >= 200
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert {r["category"] for r in rows} >= {
        "everyday",
        "advice",
        "writing",
        "coding",
        "reasoning",
        "harmless",
    }
    ds = load_prompts(PromptsConfig())
    assert ds.column_names == ["prompt_id", "prompt", "category"]
    assert len(ds) == len(rows)


@pytest.fixture
def table():
    return {"qid": ["a", "b", "c"], "question": ["one?", "two?", "three?"]}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", "dir", "dictdir"])
def test_loads_every_format_with_custom_columns(tmp_path, table, suffix):
    ds = Dataset.from_dict(table)
    path = tmp_path / f"prompts{suffix if suffix.startswith('.') else ''}"
    if suffix == ".jsonl":
        ds.to_json(path)
    elif suffix == ".csv":
        ds.to_csv(path, index=False)
    elif suffix == ".parquet":
        ds.to_parquet(path)
    elif suffix == "dir":
        ds.save_to_disk(path)
    else:
        DatasetDict({"train": ds}).save_to_disk(path)
    out = load_prompts(PromptsConfig(source=str(path), prompt_column="question", id_column="qid"))
    assert out["prompt_id"] == ["a", "b", "c"]
    assert out["prompt"] == ["one?", "two?", "three?"]


def test_missing_prompt_column_names_file_and_field(tmp_path, table):
    path = tmp_path / "p.jsonl"
    Dataset.from_dict(table).to_json(path)
    with pytest.raises(ConfigError) as err:
        load_prompts(PromptsConfig(source=str(path)))
    assert f"{path}: no prompt column 'prompt' (prompts.prompt_column)" in str(err.value)
    assert "qid, question" in str(err.value)


def test_missing_id_column_and_derived_ids(tmp_path, table):
    path = tmp_path / "p.jsonl"
    Dataset.from_dict(table).to_json(path)
    with pytest.raises(ConfigError, match="no id column 'id'"):
        load_prompts(PromptsConfig(source=str(path), prompt_column="question"))
    out = load_prompts(PromptsConfig(source=str(path), prompt_column="question", id_column=None))
    assert len(set(out["prompt_id"])) == 3


def test_empty_prompt_and_duplicate_ids_name_the_row(tmp_path):
    path = tmp_path / "p.jsonl"
    Dataset.from_dict({"id": ["a", "b"], "prompt": ["ok", " "]}).to_json(path)
    with pytest.raises(ConfigError, match=r"row 2: 'prompt' must be a non-empty string"):
        load_prompts(PromptsConfig(source=str(path)))
    Dataset.from_dict({"id": ["a", "a"], "prompt": ["x", "y"]}).to_json(path)
    with pytest.raises(ConfigError, match="row 2: duplicate id 'a'"):
        load_prompts(PromptsConfig(source=str(path)))


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_prompts(PromptsConfig(source=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ConfigError, match="not builtin, a file"):
        load_prompts(PromptsConfig(source="no-such-org/no-such-dataset"))


def test_split_is_deterministic_and_disjoint():
    cfg = PromptsConfig(limit=30, eval_size=10)
    prompts = load_prompts(cfg)
    train_a, held_a = split_prompts(prompts, cfg)
    train_b, held_b = split_prompts(prompts, cfg)
    assert (len(train_a), len(held_a)) == (20, 10)
    assert train_a["prompt_id"] == train_b["prompt_id"]
    assert not set(train_a["prompt_id"]) & set(held_a["prompt_id"])
    with pytest.raises(ConfigError, match="leaves no training prompts"):
        split_prompts(prompts, PromptsConfig(limit=5, eval_size=5))


def test_a_bad_jsonl_line_is_named_by_its_number(tmp_path):
    path = tmp_path / "prompts.jsonl"
    good = "".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(300))
    path.write_text(good + '{"prompt": broken\n' + json.dumps({"prompt": "after"}) + "\n")
    with pytest.raises(ConfigError, match=rf"{path}:301: not valid JSON"):
        load_prompts(PromptsConfig(source=str(path)))
    path.write_text(good + "[1, 2]\n")
    with pytest.raises(ConfigError, match=rf"{path}:301: a JSON object per line"):
        load_prompts(PromptsConfig(source=str(path)))


def test_a_csv_with_only_its_header_says_so(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("prompt,category\n")
    with pytest.raises(ConfigError, match="a header and no rows"):
        load_prompts(PromptsConfig(source=str(path)))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("p.jsonl", b'{"prompt": "a"}\nnot json\n', "p.jsonl:2: not valid JSON"),
        ("p.json", b"[1, 2", "p.json:1: not valid JSON"),
        ("p.parquet", b"xx", "p.parquet: cannot read as parquet"),
    ],
)
def test_a_bad_file_is_one_clean_message(tmp_path, capfd, name, content, message):
    """``datasets`` says ERROR on its own before raising; only rlaif's message is shown."""
    import logging

    path = tmp_path / name
    path.write_bytes(content)
    logging.getLogger("datasets").addHandler(handler := logging.StreamHandler())
    try:
        with pytest.raises(ConfigError, match=message):
            load_prompts(PromptsConfig(source=str(path)))
    finally:
        logging.getLogger("datasets").removeHandler(handler)
    err = capfd.readouterr().err
    assert "Failed to" not in err and "ERROR" not in err, err
