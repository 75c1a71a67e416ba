"""Checklist judges over real HTTP (the loopback server writes checklists and answers their
items, OpenAI and Anthropic style), and a person's edit through the CLI re-judging a run."""

import json

import pytest
import yaml
from cli_runner import run_cli
from configs_for_tests import api_judge, pipeline, prompt_pipeline
from datasets import Dataset

from rlaif.config import AggregateConfig, JudgeConfig, PipelineConfig
from rlaif.judging.store import JudgmentStore
from rlaif.run.estimate import estimate
from rlaif.run.run_dir import read_manifest
from rlaif.stages import aggregate, judge
from rlaif.testing.loopback import LoopbackJudgeServer

SHORT, LONG = "Boil water, steep.", "A long and winding answer that goes on well past forty chars."


@pytest.fixture
def server():
    with LoopbackJudgeServer() as srv:
        yield srv


def judges(server, kind: str = "openai") -> list[dict]:
    url = server.openai_url if kind == "openai" else server.url
    base = {"backend": kind, "base_url": url}
    return [
        api_judge(url, **base, name="writer", rubric="checklist"),
        api_judge(url, **base, name="items", rubric="checklist_items"),
    ]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_api_judges_write_checklists_and_judge_their_items(server, tmp_path, kind):
    rows = [
        {"pair_id": f"{p}:0-1", "prompt_id": p, "prompt": f"Make {p}?", "index_a": 0,
         "index_b": 1, "response_a": SHORT, "response_b": LONG}
        for p in ("tea", "soup")
    ]  # fmt: skip
    cfg = JudgeConfig(judges=judges(server, kind), checklists={"items_judge": "items"})
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(Dataset.from_list(rows), cfg, store=store)
        asked = server.requests
        again = judge(Dataset.from_list(rows), cfg, store=store)
    # 2 checklists written, then 2 answers a prompt asked about the 2 items no check settles
    assert asked == 2 + 4 and server.requests == asked
    assert set(out["status"]) == {"ok"} and set(out["judge"]) == {"writer"}
    # the short answer meets everything (weights 2 + 1 + 1), the long one nothing
    for r in out:
        answer = r["response_a"] if r["order"] == "a" else r["response_b"]
        assert r["score"] == (1.0 if answer == SHORT else 0.0)
    assert set(out["p_a"]) == {1.0}
    assert all(again["cached"]) and again["score"] == out["score"]
    prefs = aggregate(out, AggregateConfig())
    assert {p["chosen"][-1]["content"] for p in prefs} == {SHORT}


def test_dry_run_counts_a_checklist_per_prompt_and_items_per_answer(server, tmp_path):
    cfg = PipelineConfig(
        name="t",
        sample={"n": 4},
        judge={"judges": judges(server), "checklists": {"items_judge": "items"}},
    )
    got = {(e.stage, e.judge): e for e in estimate(cfg, tmp_path, tmp_path / "none.sqlite")}
    prompts = (cfg.prompts.limit or 240) - cfg.prompts.eval_size
    assert got["judge", "writer"].calls == prompts
    assert got["judge", "items"].calls == prompts * 4
    assert got["evaluate", "writer"].calls == cfg.prompts.eval_size
    assert got["evaluate", "items"].calls == 2 * cfg.prompts.eval_size


def test_a_persons_edit_through_the_cli_rejudges_only_its_prompt(server, tmp_path, tiny_model):
    config = pipeline(
        tmp_path,
        tiny_model,
        name="cl",
        judges=judges(server),
        prompts={"limit": 5, "eval_size": 2},
        judge={"checklists": {"items_judge": "items"}},
    )
    path = tmp_path / "cl.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    first = run_cli("run", path, "--run-dir", run_dir, "--stages", "aggregate", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    counts = read_manifest(run_dir)["stages"]["judge"]["counts"]
    assert counts["ok"] == counts["judgments"] > 0
    asked = server.requests

    listed = run_cli("checklists", run_dir, "--out", tmp_path / "c.jsonl", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and {x["judge"] for x in lines} == {"writer"}
    assert lines[0]["items"][0] == {
        "requirement": "At most 40 characters", "weight": 2.0, "check": "max_chars", "value": 40
    }  # fmt: skip
    assert not any(x["edited"] for x in lines)

    bad = tmp_path / "bad.jsonl"
    key = lines[0]["key"]
    nan = json.dumps({"key": key, "items": [{"requirement": "x", "weight": float("nan")}, "y"]})
    nan = nan.replace("]}", ', "z"]}')  # json.dumps writes NaN, as a careless script would
    # every bad line's message is in tests/fast/test_checklists.py; here, through the CLI
    for content, message in [
        (json.dumps({"key": key, "items": ["only one"]}), "1: 1 items; a checklist has 3 to 8"),
        (nan, "1: item 1: weight must be a finite positive number, got nan"),
    ]:
        bad.write_text(content + "\n")
        refused = run_cli("checklists", run_dir, "--set", bad, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert f"{bad}:{message}" in refused.stderr and "Traceback" not in refused.stderr
    bad.write_bytes(b"\n" + json.dumps(lines[0]).encode().replace(b"At most", b"\xe0 most"))
    refused = run_cli("checklists", run_dir, "--set", bad, cwd=tmp_path)
    assert refused.returncode == 2 and f"{bad}:2: not UTF-8 (byte 0xe0)" in refused.stderr

    lines[0]["items"] = [
        {"requirement": "At most 5 characters", "check": "max_chars", "value": 5},
        "Answers the request",
        "Names a tool",
    ]
    (tmp_path / "c.jsonl").write_text(json.dumps(lines[0]) + "\n")
    stored = run_cli("checklists", run_dir, "--set", tmp_path / "c.jsonl", cwd=tmp_path)
    assert stored.returncode == 0 and "1 checklist(s) stored" in stored.stderr
    again = run_cli("run", path, "--run-dir", run_dir, "--stages", "aggregate", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    # only the edited prompt's answers were asked about its new items; no checklist rewritten
    answers = {
        (r["prompt"], r[f"response_{s}"])
        for r in Dataset.load_from_disk(str(run_dir / "pairs"))
        for s in "ab"
        if r["prompt"] == lines[0]["prompt"]
    }
    assert server.requests - asked == len(answers)
    shown = run_cli("checklists", run_dir, cwd=tmp_path)
    edited = [json.loads(x) for x in shown.stdout.splitlines()]
    assert [x["edited"] for x in edited] == [True, False, False]
    assert edited[0]["items"][0]["value"] == 5


def test_pairs_held_back_as_unreadable_are_a_warning_and_exit_3(tmp_path, tiny_model):
    questions = [f"Question {i}: name a fruit{' x' if i % 2 else ''}." for i in range(6)]
    path = prompt_pipeline(
        tmp_path,
        tiny_model,
        questions,
        judges=[{"backend": "python", "callable": "judges_for_tests:unreadable_on_x"}],
        eval_size=1,
    )
    run_dir = tmp_path / "run"
    done = run_cli("run", path, "--run-dir", run_dir, "--stages", "aggregate", cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "pair(s) were held back because their judgments could not be read" in done.stderr
    log = (run_dir / "logs" / "run.log").read_text()
    held = read_manifest(run_dir)["stages"]["aggregate"]["counts"]["incomplete_pairs"]
    assert held["unreadable"] > 0
    warned = [line for line in log.splitlines() if " WARNING " in line and "held back" in line]
    assert warned and f"{held['unreadable']} pair(s) held back" in warned[0]
