"""Judge calibration against people: the fit, its held-out figures, the file a judge config
names, and aggregation that reads calibrated probabilities and weighs judges by agreement."""

import json
import math
import random

import numpy as np
import pytest
import yaml
from cli_runner import run_cli
from configs_for_tests import judges_only, pipeline, write
from datasets import Dataset, load_from_disk

from rlaif import Pipeline
from rlaif.config import AggregateConfig, JudgeConfig, PythonJudgeConfig, load_pipeline
from rlaif.debias.calibration import (
    Calibration,
    expected_calibration_error,
    fit,
    load_calibration,
    log_loss,
    panel_calibrations,
)
from rlaif.errors import ConfigError
from rlaif.judging.schema import JUDGMENT_COLUMNS
from rlaif.stages.aggregate import aggregate


def synthetic(n: int, sharpen: float, shift: float = 0.0, seed: int = 0):
    """A judge that reports sigmoid(sharpen * z + shift) where the truth is sigmoid(z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    first_won = rng.random(n) < 1 / (1 + np.exp(-z))
    return 1 / (1 + np.exp(-(sharpen * z + shift))), first_won


def test_temperature_undoes_overconfidence_on_held_out_answers():
    p, y = synthetic(4000, sharpen=3.0)
    cal = fit("j", p[:2000], y[:2000])
    assert cal.temperature == pytest.approx(3.0, rel=0.15)
    held, truth = p[2000:], y[2000:]
    assert expected_calibration_error(cal.first(held), truth) < 0.5 * expected_calibration_error(
        held, truth
    )
    assert log_loss(cal.first(held), truth) < log_loss(held, truth)
    assert np.all(np.diff(cal.first(np.sort(held))) >= 0)  # the judge's order is kept


def test_isotonic_also_takes_out_a_position_bias():
    pytest.importorskip("sklearn")
    p, y = synthetic(4000, sharpen=1.0, shift=1.5)
    temperature, isotonic = fit("j", p[:2000], y[:2000]), fit("j", p[:2000], y[:2000], "isotonic")
    held, truth = p[2000:], y[2000:]
    # one scale cannot move P(first) back towards 0.5 at the logit's zero; a monotone map can
    assert expected_calibration_error(isotonic.first(held), truth) < 0.5 * (
        expected_calibration_error(temperature.first(held), truth)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"judge": "j", "method": "temperature",\n "temperature": }', r"c\.json:2: not JSON"),
        ('{"judge": "j", "method": "platt"}', "'method' must be one of temperature, isotonic"),
        ('{"judge": "j", "method": "temperature", "temperature": -1}', "positive number"),
        ('{"judge": "j", "method": "isotonic", "x": [0.1], "y": [0.2]}', "equal-length"),
    ],
)
def test_a_bad_calibration_file_is_named_with_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_calibration(path)


def judgments(rows: list[tuple[str, str, float]]) -> Dataset:
    """Judgment rows for pair p0 (answers 'x' and 'y'): (judge, order, p_a)."""
    base = {c: [None] * len(rows) for c in JUDGMENT_COLUMNS}
    base.update(
        pair_id=["p0:0-1"] * len(rows),
        prompt_id=["p0"] * len(rows),
        prompt=["q"] * len(rows),
        index_a=[0] * len(rows),
        index_b=[1] * len(rows),
        response_a=["x"] * len(rows),
        response_b=["y"] * len(rows),
        judge=[r[0] for r in rows],
        order=[r[1] for r in rows],
        p_a=[r[2] for r in rows],
        status=["ok"] * len(rows),
        key=[f"k{i}" for i in range(len(rows))],
        rubric_id=["r@1"] * len(rows),
        rubric_hash=["h"] * len(rows),
        cached=[False] * len(rows),
    )
    return Dataset.from_dict(base)


def test_aggregation_reads_calibrated_probabilities_and_weighs_judges_by_agreement():
    rows = judgments(
        [("good", "ab", 0.9), ("good", "ba", 0.9), ("coin", "ab", 0.2), ("coin", "ba", 0.2)]
    )
    equal = aggregate(rows, AggregateConfig(ties="keep"))
    assert equal["p_chosen"][0] == pytest.approx(0.55)
    cals = {
        "good": Calibration("good", "temperature", temperature=2.0, agreement=0.8),
        "coin": Calibration("coin", "temperature", temperature=1.0, agreement=0.5),
    }
    softened = 1 / (1 + math.exp(-math.log(9) / 2))  # 0.9 at temperature 2
    calibrated = aggregate(rows, AggregateConfig(ties="keep"), calibrations=cals)
    # 0.75 and 0.2 for x: now y is preferred
    assert calibrated["p_chosen"][0] == pytest.approx(1 - (softened + 0.2) / 2)
    assert calibrated["chosen"][0][-1]["content"] == "y"
    weighted = aggregate(
        rows, AggregateConfig(ties="keep", judge_weights="agreement"), calibrations=cals
    )
    assert weighted["p_chosen"][0] == pytest.approx(softened)  # the coin's weight is 0
    assert weighted["chosen"][0][-1]["content"] == "x"


def test_weights_need_every_judge_measured(tmp_path):
    good = Calibration("good", "temperature", temperature=1.0, agreement=0.8).save(
        tmp_path / "good.json"
    )
    panel = JudgeConfig(
        judges=[
            PythonJudgeConfig(name="good", callable="m:f", calibration=str(good)),
            PythonJudgeConfig(name="other", callable="m:f"),
        ]
    )
    assert set(panel_calibrations(panel, "equal")) == {"good"}
    with pytest.raises(ConfigError, match="missing for: other"):
        panel_calibrations(panel, "agreement")


def labelled(tmp_path, n: int = 80) -> str:
    """People prefer the shorter answer 3 times in 4."""
    rng = random.Random(1)
    rows = []
    for i in range(n):
        short, long = f"ok {i}", f"a much longer answer {i} " * 3
        chosen, rejected = (short, long) if rng.random() < 0.75 else (long, short)
        rows.append({"prompt": f"q{i}", "chosen": chosen, "rejected": rejected})
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


def test_judge_eval_calibrate_writes_a_file_the_pipeline_uses(tmp_path):
    cfg = judges_only(tmp_path, "cal", {"sure": "overconfident"})
    pipeline = write(tmp_path, cfg)
    done = run_cli("judge-eval", labelled(tmp_path), "--pipeline", pipeline, "--calibrate")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])["calibration"]["sure"]
    assert figures["n_fit"] + figures["n_heldout"] == 160  # 80 pairs, both orders
    assert figures["ece_after"] < figures["ece_before"]
    assert figures["log_loss_after"] < figures["log_loss_before"]
    assert 0.6 <= figures["agreement"] <= 0.9
    path = tmp_path / "out" / "cal" / "calibration" / "sure.json"
    assert f"set calibration: {path} on judge 'sure'" in done.stdout
    cal = load_calibration(path)
    assert cal.temperature > 1.5 and cal.agreement == figures["agreement"]
    cfg["judge"]["judges"][0]["calibration"] = str(path)
    cfg["aggregate"] = {"judge_weights": "agreement"}
    pipeline.write_text(yaml.safe_dump(cfg))
    assert panel_calibrations(load_pipeline(pipeline).judge, "agreement")["sure"] == cal


def test_a_pipeline_aggregates_through_the_calibration_and_a_refit_reaggregates(
    tmp_path, tiny_model
):
    path = Calibration("sure", "temperature", temperature=4.0, agreement=0.75).save(
        tmp_path / "sure.json"
    )
    judge = {
        "name": "sure",
        "backend": "python",
        "callable": "judges_for_tests:overconfident",
        "calibration": str(path),
    }
    cfg = write(tmp_path, pipeline(tmp_path, tiny_model, judges=[judge]))
    run_dir = tmp_path / "run"
    first = Pipeline.from_yaml(cfg).run(stages=["aggregate"], run_dir=run_dir)
    prefs = load_from_disk(str(run_dir / "preferences"))
    raw_margin = 2 * 0.99 - 1
    assert len(prefs) > 0 and max(prefs["margin"]) < raw_margin - 0.2  # 0.99 softened
    again = Pipeline.from_yaml(cfg).run(stages=["aggregate"], run_dir=run_dir)
    stamp = first.manifest["stages"]["aggregate"]["started_at"]
    assert again.manifest["stages"]["aggregate"]["started_at"] == stamp  # nothing changed
    Calibration("sure", "temperature", temperature=1.0, agreement=0.75).save(path)
    refit = Pipeline.from_yaml(cfg).run(stages=["aggregate"], run_dir=run_dir)
    fingerprint = first.manifest["stages"]["aggregate"]["fingerprint"]
    assert refit.manifest["stages"]["aggregate"]["fingerprint"] != fingerprint  # re-aggregated
    assert (
        refit.manifest["stages"]["judge"]["started_at"]
        == (first.manifest["stages"]["judge"]["started_at"])
    )  # calibrating never asks a judge again
    assert max(load_from_disk(str(run_dir / "preferences"))["margin"]) == pytest.approx(raw_margin)
