"""Against people: calibration fitted and checked on the human-labelled HH-RLHF sample in
``../shared/`` (skipped where it is not)."""

import json

import pytest
from cli_runner import run_cli
from configs_for_tests import judges_only, write
from datasets_for_tests import HH

from rlaif.debias.calibration import load_calibration


@pytest.mark.skipif(not HH.exists(), reason=f"{HH} is not here")
def test_calibration_round_trip_on_hh_rlhf(tmp_path):
    pipeline = write(tmp_path, judges_only(tmp_path, "hh", {"rule": "overconfident"}))
    done = run_cli("judge-eval", str(HH), "--pipeline", pipeline, "--calibrate", "--limit", "400")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.splitlines()[-1])["calibration"]["rule"]
    print(f"\nHH-RLHF, shorter-answer rule judge: {figures}")
    assert figures["log_loss_after"] < figures["log_loss_before"]
    assert (
        load_calibration(tmp_path / "out" / "hh" / "calibration" / "rule.json").agreement
        == figures["agreement"]
    )
