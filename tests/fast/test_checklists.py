"""Per-prompt checklists: items and checks, the checklist judge in the judge stage, people's
edits, preferences and the live rewards."""

import json

import judges_for_tests as jt
import pytest
from configs_for_tests import pipeline, write
from datasets import Dataset

from rlaif import Pipeline
from rlaif.config import AggregateConfig, JudgeConfig, PythonJudgeConfig
from rlaif.errors import ConfigError
from rlaif.judges import Budget
from rlaif.judges.verdicts import from_json
from rlaif.judging.checklists import edit_checklists, run_checklists
from rlaif.judging.judge_eval import judge_eval
from rlaif.judging.reward import JudgeReward, PointwiseReward
from rlaif.judging.store import JudgmentStore
from rlaif.rubrics import load_rubric
from rlaif.rubrics.checklists import read_items, read_met
from rlaif.run.datasets_io import load_dir
from rlaif.run.run_dir import RunDir
from rlaif.stages import aggregate, judge


def test_items_and_their_checks():
    items = read_items(
        [
            "Names the capital",
            {"requirement": "Short", "check": "max_words", "value": "5", "weight": 2},
            {"text": "Says Paris", "check": "contains", "value": "paris"},
            {"requirement": "Is JSON", "check": "json", "value": "ignored"},
            {"requirement": "Ends a sentence", "check": "regex", "value": r"[.!?]$"},
            {"requirement": "Left to a judge", "check": "none", "value": "x"},
        ]
    )
    assert [i.check for i in items] == [None, "max_words", "contains", "json", "regex", None]
    assert items[1].value == 5 and items[1].weight == 2.0 and items[3].value is None
    assert items[1].met_by("It is Paris.") and not items[1].met_by("one two three four five six")
    assert items[2].met_by("PARIS") and not items[2].met_by("Lyon")
    assert items[3].met_by('{"a": 1}') and not items[3].met_by("{a: 1}")
    assert items[4].met_by("Paris.") and not items[4].met_by("Paris")
    for bad, message in [
        ({"requirement": "x", "check": "shell", "value": "rm"}, "unknown check 'shell'"),
        ({"requirement": "x", "check": "max_chars", "value": "ten"}, "whole number"),
        ({"requirement": "x", "check": "regex", "value": "("}, "not a regex RE2 runs"),
        ({"requirement": "x", "check": "regex", "value": r"(a)\1"}, "backreferences"),
        ({"requirement": "x", "weight": 0}, "weight must be a finite positive number"),
        ({"requirement": "x", "weight": float("nan")}, "finite positive"),
        ({"requirement": "x", "weight": float("inf")}, "finite positive"),
        ({"requirement": "x", "check": "max_chars", "value": -5}, "0 or more"),
        ({"weight": 1}, "no requirement text"),
    ]:
        with pytest.raises(ValueError, match=message):
            read_items([bad])
    with pytest.raises(ValueError, match="9 items; a checklist has 1 to 8"):
        read_items(["x"] * 9)
    loose = [{"requirement": "x", "wieght": 2}]
    assert read_items(loose)[0].weight == 1.0  # a model's stray field is no harm...
    with pytest.raises(ValueError, match="item 1: unknown field.*'wieght'"):
        read_items(loose, strict=True)  # ...but a person's typo is refused
    assert read_met(["yes", "No", True], 3) == [True, False, True]
    with pytest.raises(ValueError, match="expected 2 answers"):
        read_met(["yes"], 2)


def test_checklist_rubrics_render_escaped_and_read_json():
    writer, items = load_rubric("checklist"), load_rubric("checklist_items")
    assert (writer.mode, items.mode) == ("checklist", "checklist_items")
    text = items.messages(
        "Q?", "an answer </answer> with a tag", "", items=("Item </requirement> one", "Two")
    )[-1]["content"]
    assert "&lt;/answer>" in text and "&lt;/requirement>" in text
    assert '<requirement number="2">' in text
    assert writer.unguarded_variables() == [] and items.unguarded_variables() == []
    written = from_json(
        writer,
        json.dumps(
            {
                "rationale": "r",
                "items": [
                    {"requirement": "Short", "weight": 2, "check": "max_chars", "value": "80"},
                    {"requirement": "Kind", "weight": 1, "check": "none", "value": ""},
                ],
            }
        ),
    )
    assert written.status == "ok"
    assert json.loads(written.items) == [
        {"requirement": "Short", "weight": 2.0, "check": "max_chars", "value": 80},
        {"requirement": "Kind", "weight": 1.0},
    ]
    assert from_json(items, '{"met": ["yes", "no"]}').items == "[true, false]"
    bad = from_json(writer, '{"items": [{"requirement": "x", "check": "exec", "value": ""}]}')
    assert bad.status == "invalid" and "unknown check 'exec'" in bad.error
    assert from_json(items, '{"met": ["maybe"]}').status == "invalid"


def test_checklist_rubric_errors_name_the_file(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text("---\nmode: checklist\nvariables: [prompt]\n---\n{{ prompt }}\n")
    with pytest.raises(ConfigError, match=f"{path}: a checklist rubric reads json"):
        load_rubric(str(path))
    path.write_text("---\nmode: checklist_items\nread: json\n---\n{{ prompt }} {{ response_a }}\n")
    with pytest.raises(ConfigError, match="undefined variable 'response_a'"):
        load_rubric(str(path))


PAIRS = [
    ("tea", "Make tea?", "tea, please", "a long answer about coffee, thanks"),
    ("hi", "Greet?", "hi", "hello please, tea"),
]


def pairs(rows=PAIRS) -> Dataset:
    return Dataset.from_list(
        [
            {"pair_id": f"{p}:0-1", "prompt_id": p, "prompt": q, "index_a": 0, "index_b": 1,
             "response_a": a, "response_b": b}
            for p, q, a, b in rows
        ]
    )  # fmt: skip


def checklist_cfg(
    writer: str = "mixed_checklist", items: bool = True, least: int = 3
) -> JudgeConfig:
    judges = [PythonJudgeConfig(name="cl", callable=f"judges_for_tests:{writer}", mode="checklist")]
    if items:
        judges.append(
            PythonJudgeConfig(
                name="items", callable="judges_for_tests:polite_items", mode="checklist_items"
            )
        )
    checklists = {"items_judge": "items" if items else None, "min_items": least}
    return JudgeConfig(judges=judges, checklists=checklists)


def scores(rows: Dataset) -> dict[tuple[str, str], float | None]:
    return {(r["prompt_id"], r["order"]): r["score"] for r in rows}


def test_checklist_written_once_per_prompt_items_once_per_answer_then_cached(tmp_path):
    jt.CALLS.clear()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(), checklist_cfg(), store=store)
        calls = list(jt.CALLS)
        again = judge(pairs(), checklist_cfg(), store=store)
    assert [c for c in calls if c[0] == "checklist"] == [
        ("checklist", "Make tea?"),
        ("checklist", "Greet?"),
    ]
    # the items judge is asked about the one item no check settles, once per answer
    assert sorted(c[1] for c in calls if c[0] == "items") == sorted(
        [a for *_, a, b in PAIRS] + [b for *_, a, b in PAIRS]
    )
    assert all(c[2:] == ("Is polite",) for c in calls if c[0] == "items")
    assert len(jt.CALLS) == len(calls)  # the re-run asked nobody
    assert set(out["judge"]) == {"cl"} and set(out["status"]) == {"ok"}
    # weights 2 (<= 20 chars), 1 (mentions tea), 1 (polite): the weighted share met
    assert scores(out) == {("tea", "a"): 1.0, ("tea", "b"): 0.0, ("hi", "a"): 0.5, ("hi", "b"): 1.0}
    by_pair = {r["prompt_id"]: r["p_a"] for r in out}
    assert by_pair == {"tea": 1.0, "hi": 0.25}  # 0.5 + (score_a - score_b) / 2
    assert out.filter(lambda r: r["prompt_id"] == "hi" and r["order"] == "a")["items"] == [
        "[true, false, false]"
    ]
    assert not any(out["cached"]) and all(again["cached"])
    assert scores(again) == scores(out)

    prefs = aggregate(out, AggregateConfig())
    chosen = {r["prompt_id"]: r["chosen"][-1]["content"] for r in prefs}
    assert chosen == {"tea": "tea, please", "hi": "hello please, tea"}


def test_checked_items_need_no_items_judge_and_unchecked_ones_say_why(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        checked = judge(pairs(), checklist_cfg("checked_checklist", items=False), store=store)
        again = judge(pairs(), checklist_cfg("checked_checklist", items=False), store=store)
        unjudged = judge(pairs(), checklist_cfg("mixed_checklist", items=False), store=store)
        empty = judge(pairs(), checklist_cfg("empty_checklist", items=False), store=store)
    # settled here, as cached as their checklist: a re-run reads the checklist and asks nobody
    assert not any(checked["cached"]) and all(again["cached"])
    # (2 * met(<= 20 chars) + met(tea) + met(no '?')) / 4
    assert scores(checked) == {
        ("tea", "a"): 1.0, ("tea", "b"): 0.25, ("hi", "a"): 0.75, ("hi", "b"): 1.0
    }  # fmt: skip
    assert set(unjudged["status"]) == {"invalid"} and set(unjudged["p_a"]) == {None}
    assert (
        "item 3 ('Is polite') names no check and judge.checklists.items_judge is unset"
        in (unjudged["error"][0])
    )
    assert set(empty["status"]) == {"invalid"}
    assert "0 items; a checklist has 1 to 8" in empty["error"][0]


def test_too_short_a_checklist_is_invalid(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(
            pairs(),
            checklist_cfg("checked_checklist", items=False, least=4),
            store=store,
        )
    assert (
        set(out["status"]) == {"invalid"} and "3 items; a checklist has 4 to 8" in out["error"][0]
    )


def test_a_persons_edit_replaces_the_written_checklist(tmp_path):
    cfg = checklist_cfg()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        before = judge(pairs(), cfg, store=store)
        found = run_checklists(cfg, pairs().to_list(), store)
        assert [(name, c.prompt, c.edited) for name, c in found] == [
            ("cl", "Make tea?", False),
            ("cl", "Greet?", False),
        ]
        tea = next(c for _, c in found if c.prompt == "Make tea?")
        known = {c.key for _, c in found}
        bad = [json.dumps({"key": tea.key, "items": [{"requirement": "x", "check": "rm"}]})]

        def edit(lines: list[str], least: int = 3, items_judge: bool = True) -> int:
            return edit_checklists(
                lines,
                "edits.jsonl",
                known,
                store,
                reviewer="ann",
                min_items=least,
                items_judge=items_judge,
            )

        with pytest.raises(ConfigError, match=r"edits.jsonl:1: item 1: unknown check 'rm'"):
            edit(bad, least=1)
        with pytest.raises(ConfigError, match="edits.jsonl:1: 1 items; a checklist has 3 to 8"):
            edit(bad)
        with pytest.raises(ConfigError, match="edits.jsonl:2: key 'nope' is not one of"):
            edit(["", json.dumps({"key": "nope", "items": ["x", "y", "z"]})])
        three = ["x", "y", "z"]
        for line, message in [
            ({"key": tea.key, "items": three, "note": 1}, "unknown field.*'note'"),
            ({"key": tea.key, "items": [{"requirement": "x", "weight": 1e999}] * 3}, "finite"),
            ({"key": tea.key, "items": [{"text": "x", "check": "min_words", "value": -1}] * 3},
             "0 or more"),
        ]:  # fmt: skip
            with pytest.raises(ConfigError, match=f"edits.jsonl:1: .*{message}"):
                edit([json.dumps(line)])
        with pytest.raises(ConfigError, match="edits.jsonl:1: item 1 names no check, and no judge"):
            edit([json.dumps({"key": tea.key, "items": three})], items_judge=False)
        clash = [json.dumps({"key": tea.key, "items": three}), json.dumps({"key": tea.key,
                 "items": ["a", "b", "c"]})]  # fmt: skip
        with pytest.raises(ConfigError, match="edits.jsonl:2: key .* other items on line 1"):
            edit(clash)
        assert store.checklist_edits() == {}  # a bad line stores nothing
        same = json.dumps({"key": tea.key, "items": three})
        assert edit([same] * 5000) == 1  # distinct checklists are counted
        mine = [
            {"requirement": "Mentions coffee", "check": "contains", "value": "coffee"},
            {"requirement": "At least 20 characters", "check": "min_chars", "value": 20},
            "Is polite",
        ]
        assert edit([json.dumps({"key": tea.key, "items": mine})]) == 1
        jt.CALLS.clear()
        after = judge(pairs(), cfg, store=store)
        edited = run_checklists(cfg, pairs().to_list(), store)
    assert [c.edited for _, c in edited] == [True, False]
    assert not any(c[0] == "checklist" for c in jt.CALLS)  # the judge's own is not asked again
    assert scores(before)["tea", "a"] == 1.0 and scores(before)["tea", "b"] == 0.0
    assert scores(after)["tea", "a"] == 1 / 3 and scores(after)["tea", "b"] == 2 / 3
    assert scores(after)["hi", "b"] == scores(before)["hi", "b"]


def test_a_failing_writer_is_retried_and_config_errors_come_first(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(), checklist_cfg("raises_in_checklist", items=False), store=store)
    assert set(out["status"]) == {"error"} and "RuntimeError" in out["error"][0]
    assert set(out["failures"]) == {1}
    with pytest.raises(ValueError, match="checklists.items_judge: no judge named 'x'"):
        JudgeConfig(judges=[PythonJudgeConfig(callable="m:f")], checklists={"items_judge": "x"})
    api_writer = {
        "backend": "openai", "name": "writer", "model": "m", "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": None, "rubric": "checklist",
    }  # fmt: skip
    with (
        JudgmentStore(tmp_path / "j.sqlite") as store,
        pytest.raises(ConfigError, match="judge 'writer' writes checklists with .*checklist.jinja"),
    ):
        judge(pairs(), JudgeConfig(judges=[api_writer]), store=store)
    stray = JudgeConfig(
        judges=[
            PythonJudgeConfig(
                name="x", callable="judges_for_tests:polite_items", mode="checklist_items"
            )
        ]
    )
    with (
        JudgmentStore(tmp_path / "j.sqlite") as store,
        pytest.raises(ConfigError, match="judge 'x' has a checklist_items rubric"),
    ):
        judge(pairs(), stray, store=store)


def test_checklist_scores_as_live_rewards(tmp_path):
    cfg = checklist_cfg()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        pointwise = PointwiseReward(cfg, store, Budget())
        got = pointwise(["Make tea?", "Make tea?"], ["tea, please", "coffee"])
        assert got == [1.0, 0.5]  # "coffee": <= 20 chars (weight 2) of 4
        grpo = JudgeReward(cfg, store, Budget())
        rewards = grpo(
            prompts=["Make tea?"] * 2,
            completions=["tea, please", "a long answer about coffee, thanks"],
            prompt_text=["Make tea?"] * 2,
            baselines=[["coffee"]] * 2,
        )
    assert rewards == [0.75, 0.25]  # 0.5 + (score - the SFT answer's 0.5) / 2
    assert grpo.steps[-1]["unanswered"] == 0


def test_checklist_pipeline_runs_and_edits_rerun_the_judge_stage(tmp_path, tiny_model):
    config = pipeline(
        tmp_path,
        tiny_model,
        name="cl",
        judges=[{"name": "cl", "backend": "python", "mode": "checklist",
                 "callable": "judges_for_tests:checked_checklist"}],
        prompts={"limit": 6, "eval_size": 2},
    )  # fmt: skip
    path = write(tmp_path, config)
    run_dir = tmp_path / "run"
    first = Pipeline.from_yaml(path).run(stages=["aggregate"], run_dir=run_dir).manifest
    counts = first["stages"]["judge"]["counts"]
    assert counts["ok"] == counts["judgments"] > 0
    with JudgmentStore(tmp_path / "judgments.sqlite") as store:
        cfg = Pipeline.from_yaml(path).config.judge
        records = load_dir(RunDir(run_dir).output("pair")).to_list()
        key = run_checklists(cfg, records, store)[0][1].key
        empty = {"check": "max_chars", "value": 0}  # no answer meets it
        items = [{"requirement": f"Says nothing {n}", **empty} for n in range(3)]
        line = json.dumps({"key": key, "items": items})
        edit_checklists([line], "e", {key}, store, reviewer="ann", min_items=3, items_judge=False)
    unchanged = Pipeline.from_yaml(path).run(stages=["aggregate"], run_dir=tmp_path / "other")
    again = Pipeline.from_yaml(path).run(stages=["aggregate"], run_dir=run_dir).manifest
    # the edit re-ran the judge stage: its prompt's answers now all score 0
    assert again["stages"]["judge"]["finished_at"] != first["stages"]["judge"]["finished_at"]
    judged = load_dir(RunDir(run_dir).output("judge")).to_list()
    edited = [r["score"] for r in judged if r["verdict"] == "0/3"]
    assert edited and set(edited) == {0.0}
    assert unchanged.manifest["stages"]["judge"]["counts"] == again["stages"]["judge"]["counts"]


def test_judge_eval_measures_a_checklist_judge_against_labels(tmp_path):
    labelled = Dataset.from_list(
        [{"prompt": f"Tea {i}?", "chosen": "tea, please", "rejected": "a long answer on coffee?"}
         for i in range(6)]
    )  # fmt: skip
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        got = judge_eval(labelled, checklist_cfg("checked_checklist", items=False), store, 0)
    assert got["pairs"] == 6
    assert got["accuracy"]["one_order"] == {"accuracy": 1.0, "coverage": 1.0}
    assert got["accuracy"]["both_orders"] == {"accuracy": 1.0, "coverage": 1.0}


def test_a_catastrophic_regex_item_cannot_hang_a_run():
    import time

    evil = [
        {"requirement": "Only a's", "check": "regex", "value": "(a+)+$"},
        {"requirement": "Only a's, again", "check": "regex", "value": "((a+)+)+$"},
    ]
    items = read_items(evil)
    start = time.perf_counter()
    for answer in ("a" * 24 + "!", "a" * 100_000 + "!", "a" * 30):
        met = [item.met_by(answer) for item in items]
        assert met == [answer.endswith("a")] * 2
    assert time.perf_counter() - start < 1.0


def test_a_set_file_that_is_not_utf8_names_its_line(tmp_path):
    from rlaif.cli.checklists import _text_lines

    path = tmp_path / "edits.jsonl"
    path.write_bytes(b'{"key": "a"}\n{"key": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"edits.jsonl:2: not UTF-8 \(byte 0xe9\)"):
        _text_lines(path)
