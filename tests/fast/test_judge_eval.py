import json

import pytest
import yaml
from cli_runner import run_cli
from datasets_for_tests import HH

from rlaif.config import JudgeConfig, PythonJudgeConfig
from rlaif.judging.judge_eval import judge_eval, load_labelled
from rlaif.judging.store import JudgmentStore


def judges(fn):
    return JudgeConfig(judges=[PythonJudgeConfig(callable=f"judges_for_tests:{fn}")])


@pytest.fixture
def labelled_file(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [
        {"prompt": f"q{i}", "chosen": "ok", "rejected": "a much longer answer " * (i + 1)}
        for i in range(40)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_accuracy_per_debiasing_step(labelled_file, tmp_path):
    data = load_labelled(labelled_file)
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        good = judge_eval(data, judges("prefer_shorter"), store)
        biased = judge_eval(data, judges("first_always"), store)
    assert good["pairs"] == 40
    steps = good["accuracy"]
    assert [
        steps[k]["accuracy"] for k in ("one_order", "both_orders", "both_orders_ties_dropped")
    ] == [1.0, 1.0, 1.0]
    # here people always chose the shorter answer: taking length out removes real signal,
    # which is why length correction is opt-in
    assert steps["length_corrected"]["accuracy"] < 0.8
    # a judge that always says "first" is right whenever the human choice was shown first
    assert 0.2 < biased["accuracy"]["one_order"]["accuracy"] < 0.8
    assert biased["accuracy"]["both_orders"]["accuracy"] == 0.5
    assert biased["accuracy"]["both_orders_ties_dropped"]["coverage"] == 0.0
    assert biased["bias"]["judges"]["python"]["first_position_win_rate"] == 1.0
    # adaptive orders: the sure judge is asked once per pair beyond its 16-pair bias sample;
    # the always-first judge's measured bias makes every answer unsure, so all are asked twice
    assert steps["adaptive_orders"] == {"accuracy": 1.0, "coverage": 1.0, "calls": 0.7}
    assert biased["accuracy"]["adaptive_orders"]["calls"] == 1.0
    assert biased["accuracy"]["adaptive_orders"]["accuracy"] == 0.5
    assert biased["bias"]["judges"]["python"]["position_consistency"] == 0.0


def test_hh_dialogues_are_split_and_odd_rows_skipped(tmp_path):
    base = "\n\nHuman: How do I bake bread?\n\nAssistant: Knead it.\n\nHuman: And then?"
    rows = [
        {"chosen": base + "\n\nAssistant: Let it rise.", "rejected": base + "\n\nAssistant: No."},
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"},
    ]
    path = tmp_path / "hh.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = load_labelled(path)
    assert len(data) == 1
    assert data[0]["prompt"].endswith("Human: And then?")
    assert (data[0]["chosen"], data[0]["rejected"]) == ("Let it rise.", "No.")


def test_cli_judge_eval(labelled_file, tmp_path):
    pipe = tmp_path / "p.yaml"
    pipe.write_text(
        yaml.safe_dump(
            {
                "name": "je",
                "output_dir": str(tmp_path / "out"),
                "judge": {
                    "judges": [{"backend": "python", "callable": "judges_for_tests:prefer_shorter"}]
                },
            }
        )
    )
    done = run_cli("judge-eval", labelled_file, "--pipeline", pipe, "--limit", "10")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["pairs"] == 10 and result["accuracy"]["both_orders"]["accuracy"] == 1.0


@pytest.mark.skipif(not HH.is_file(), reason="HH-RLHF sample not present (set RLAIF_HH_RLHF)")
def test_real_hh_rlhf_file_loads():
    data = load_labelled(HH)
    assert len(data) >= 2300
    assert all(data[i]["chosen"] != data[i]["rejected"] for i in range(0, len(data), 97))
    assert "Human:" in data[0]["prompt"]
