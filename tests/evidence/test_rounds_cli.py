"""On-policy rounds through the CLI: the chain of rounds, each from the last policy, resumed."""

import json

from cli_runner import run_cli
from configs_for_tests import rounds_config, write
from datasets import load_from_disk

from rlaif.ops.export import export
from rlaif.run.run_dir import read_manifest


def test_each_round_starts_from_the_last_policy_and_the_chain_resumes(tmp_path, tiny_model):
    cfg = write(tmp_path, rounds_config(tmp_path, tiny_model, replay=0.5))
    done = run_cli("run", str(cfg), "--run-dir", str(tmp_path / "chain"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| round | vs SFT" in done.stdout
    chain = json.loads((tmp_path / "chain" / "rounds.json").read_text())["rounds"]
    assert [r["index"] for r in chain] == [1, 2]
    one, two = (read_manifest(tmp_path / "chain" / f"round-{i}") for i in (1, 2))
    assert "start_policy" not in one  # round 1 samples from the SFT model
    assert one["round"]["sampled_from"] == str(tiny_model)
    assert two["start_policy"]["path"] == chain[0]["policy"]
    assert two["start_policy"]["identity"] == one["stages"]["train"]["output_hash"]
    assert two["round"]["reference"] == str(tiny_model)  # DPO's reference stays the SFT model
    assert chain[0]["win_rate_vs_previous"] is None
    vs_previous = two["evaluation"]["vs_previous"]
    assert vs_previous["previous"] == str(tmp_path / "chain" / "round-1")
    assert chain[1]["win_rate_vs_previous"] == vs_previous["win_rate"]
    own = load_from_disk(str(tmp_path / "chain" / "round-2" / "preferences"))
    replayed = load_from_disk(chain[1]["train_input"])
    assert len(replayed) == len(own) + round(0.5 * len(own))  # half as many again, replayed
    again = run_cli("run", str(cfg), "--run-dir", str(tmp_path / "chain"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "started" not in again.stderr  # every stage of every round: complete, skipped
    assert json.loads((tmp_path / "chain" / "rounds.json").read_text())["rounds"] == chain
    status = run_cli("status", str(tmp_path / "chain"))
    assert status.returncode == 0, status.stderr
    assert len([line for line in status.stdout.splitlines() if line.startswith("| 2 |")]) == 1
    page = run_cli("report", str(tmp_path / "chain"))
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "chain" / "report" / "index.html").read_text()
    assert "2 rounds" in html and str(tmp_path / "chain" / "round-2") in html
    exported = export(tmp_path / "chain", "jsonl", tmp_path / "export")[0]
    assert len(exported.read_text().splitlines()) == len(own)  # the last round's preferences
