"""Plots and the HTML report, on small run directories written the way the pipeline writes them."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from cli_runner import run_cli
from datasets import Dataset
from PIL import Image

from rlaif.debias.bias import judge_report
from rlaif.errors import ConfigError
from rlaif.report import length_drift, plots, write_plots, write_report
from rlaif.report.run_data import nightly_costs
from rlaif.run.stage_table import NAMES as STAGES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert('x')</script>"


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()
        assert image.size[0] > 100 and image.size[1] > 100


class _Page(HTMLParser):
    """Section ids and image sources of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            self.sections.append(values["id"])
        if tag == "img":
            self.images.append(values["src"])


def parse(index: Path) -> _Page:
    page = _Page()
    page.feed(index.read_text())
    return page


def _judgments(judges: list[str], pairs: int = 12) -> pd.DataFrame:
    """Each judge prefers the shorter answer, in both orders; 'lazy' always says 'first'."""
    rows = []
    for i in range(pairs):
        a, b = "x" * (10 + 7 * i), "y" * (61 - 3 * i)  # never the same length
        for judge in judges:
            for order in ("ab", "ba"):
                shorter_first = len(a) < len(b) if order == "ab" else len(b) < len(a)
                p_first = 1.0 if judge == "lazy" else (0.9 if shorter_first else 0.1)
                rows.append(
                    {
                        "pair_id": f"p{i}:0-1",
                        "prompt": f"prompt {i}",
                        "response_a": a,
                        "response_b": b,
                        "judge": judge,
                        "order": order,
                        "p_first": p_first,
                        "p_a": p_first if order == "ab" else 1 - p_first,
                        "status": "ok",
                        "cost_usd": 0.001,
                    }
                )
    return pd.DataFrame(rows)


def make_run(
    run_dir: Path,
    *,
    done: tuple[str, ...] = STAGES,
    judges: tuple[str, ...] = ("short", "lazy"),
    method: str = "rm_ppo",
    prompt: str = "Name a fruit.",
    extra: dict | None = None,
) -> Path:
    """A run directory with the stages in ``done`` completed and their outputs written."""
    run_dir.mkdir(parents=True)
    counts = {
        "sample": {"prompts": 4, "responses": 16},
        "pair": {"pairs": 12},
        "judge": {"judgments": 48, "ok": 48, "cost_usd": 0.048},
        "aggregate": {"pairs": 12, "preferences": 12},
        "train": {"method": method},
        "evaluate": {"prompts": 3, "judged": 3, "cost_usd": 0.006},
    }
    manifest: dict = {
        "pipeline": "demo",
        "config_hash": "ab" * 32,
        "config": {"model": "tiny", "train": {"method": method}},
        "stages": {s: {"status": "completed", "seconds": 1.5, "counts": counts[s]} for s in done},
        **(extra or {}),
    }
    if "judge" in done:
        frame = _judgments(list(judges))
        Dataset.from_pandas(frame).save_to_disk(str(run_dir / "judgments"))
    if "aggregate" in done:
        manifest["judge_report"] = judge_report(frame)
        (run_dir / "preferences").mkdir()
        (run_dir / "preferences" / "judge_report.json").write_text(
            json.dumps(manifest["judge_report"])
        )
    if "train" in done:
        if method == "dpo":
            log = {"step": [1.0, 2.0, 3.0, None], "loss": [0.693, 0.62, 0.55, None]}
        else:
            log = {
                "step": [1, 2, 3],
                "reward": [-0.2, 0.4, 1.1],
                "kl": [0.0, 0.8, 1.9],
                "response_length": [41.0, 33.0, 25.0],
            }
        Dataset.from_dict(log).save_to_disk(str(run_dir / "train" / "log"))
    if "evaluate" in done:
        Dataset.from_dict(
            {
                "prompt": [prompt, "Say hi.", "Count to three."],
                "policy_response": ["Apple.", "Hi", "1 2 3"],
                "reference_response": ["An apple is a fruit.", "Hello there!", "one two three"],
                "p_policy": [1.0, 0.5, 0.0],
            }
        ).save_to_disk(str(run_dir / "evaluation"))
        summary = {
            "n": 3,
            "win_rate": 0.5,
            "ci_low": 0.0,
            "ci_high": 1.0,
            "lc_win_rate": 0.41,
            "wins": 1,
            "ties": 1,
            "losses": 1,
        }
        (run_dir / "evaluation" / "summary.json").write_text(json.dumps(summary))
        manifest["evaluation"] = summary
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def test_each_plot_writes_a_png(tmp_path):
    judges = {
        "a": {"first_position_win_rate": 0.9, "position_consistency": 0.3},
        "b": {"first_position_win_rate": 0.5},
    }
    written = [
        plots.training_curves([1, 2, 3], {"loss": [0.69, None, 0.5]}, tmp_path / "t.png"),
        plots.win_rate(
            {"win_rate": 0.6, "ci_low": 0.45, "ci_high": 0.75, "lc_win_rate": 0.52},
            tmp_path / "w.png",
        ),
        plots.length_drift([10, 20, 30], [40, 50, 60, 70], tmp_path / "l.png"),
        plots.position_bias(judges, tmp_path / "p.png"),
        plots.judge_agreement({"a~b": 0.4, "a~c": None, "b~c": -0.1}, tmp_path / "k.png"),
        plots.order_agreement([0.9, 0.8], [0.1, 0.7], "a", tmp_path / "o.png"),
        plots.length_relation(
            {"a": ([-50, -10, 0, 10, 50], [0.1, 0.4, 0.5, 0.6, 0.9])}, tmp_path / "r.png"
        ),
        plots.cost_per_night(["2026-01-01", "2026-01-02"], [0.5, 0.0], tmp_path / "c.png"),
    ]
    for path in written:
        assert_png(path)
    assert len({p.read_bytes() for p in written}) == len(written)


def test_plots_refuse_what_they_cannot_draw(tmp_path):
    with pytest.raises(ValueError, match="no series"):
        plots.training_curves([1], {}, tmp_path / "t.png")
    with pytest.raises(ValueError, match="two judges"):
        plots.judge_agreement({}, tmp_path / "k.png")


def test_full_report_has_every_section_and_its_images(tmp_path):
    run_dir = make_run(tmp_path / "run")
    index = write_report(run_dir)
    assert index == run_dir / "report" / "index.html"
    page = parse(index)
    assert page.sections == ["summary", "training", "evaluation", "judges", "audit", "cost"]
    assert set(page.images) == {
        "training_curves.png",
        "win_rate.png",
        "length_drift.png",
        "position_bias.png",
        "judge_agreement.png",
        "length_relation.png",
    }
    for src in page.images:
        assert_png(index.parent / src)
    text = index.read_text()
    assert text.count("How to read this") == 6
    assert "Cohen&#39;s kappa lazy~short" in text and "Krippendorff" in text
    assert "abababababab" in text  # config hash, 12 digits
    assert "0.054" in text  # judge + evaluate cost
    assert "first-position win rate" in text
    assert "absent: cost per night: not a nightly run" in text


def test_the_cost_section_shows_what_the_prompt_cache_saved(tmp_path):
    cache = {"input_tokens": 1000, "cached_input_tokens": 800, "cache_write_tokens": 100,
             "cached_share": 0.8, "saved_usd": 0.0021}  # fmt: skip
    run_dir = make_run(tmp_path / "run")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"]["judge"]["counts"]["prompt_cache"] = cache
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    text = write_report(run_dir).read_text()
    assert "prompt cache: input the providers read" in text
    row = re.search(r"<td>judge</td>\s*<td>80.0%</td>\s*<td>800</td>\s*<td>100</td>\s*"
                    r"<td>0.0021</td>", text)  # fmt: skip
    assert row, text[text.index("prompt cache") :][:600]
    assert "prompt cache" not in write_report(make_run(tmp_path / "plain")).read_text()


def test_a_judge_audit_in_the_pipeline_folder_is_a_section(tmp_path):
    from rlaif.config import PythonJudgeConfig
    from rlaif.judges import Budget
    from rlaif.judging.audit import audit_judge, write_audit
    from rlaif.judging.store import JudgmentStore

    run_dir = make_run(tmp_path / "run")
    assert "absent: judge audit: no judge_audit.json" in write_report(run_dir).read_text()
    spec = PythonJudgeConfig(name="shorter", callable="judges_for_tests:prefer_shorter")
    with JudgmentStore(tmp_path / "judgments.sqlite") as store:
        results = audit_judge(spec, ("verdict_text", "padding"), store=store, budget=Budget())
    write_audit(results, tmp_path, threshold=0.25)
    text = write_report(run_dir).read_text()
    assert "threshold 0.25: failed" in text
    assert "<td>verdict_text</td><td>1</td>" in text.replace("\n", "").replace(" ", "")


def test_single_judge_is_compared_with_itself_across_orders(tmp_path):
    run_dir = make_run(tmp_path / "run", judges=("short",))
    index = write_report(run_dir, tmp_path / "elsewhere")
    assert index == tmp_path / "elsewhere" / "index.html"
    assert not (run_dir / "report").exists()
    assert "one judge against itself across orders (Cohen&#39;s kappa 1.0)" in index.read_text()
    assert_png(tmp_path / "elsewhere" / "judge_agreement.png")


def test_a_run_stopped_after_pairing_reports_what_is_absent(tmp_path):
    run_dir = make_run(tmp_path / "run", done=("sample", "pair"))
    index = write_report(run_dir)
    page = parse(index)
    assert page.sections == ["summary", "training", "evaluation", "judges", "audit", "cost"]
    assert page.images == []
    text = index.read_text()
    for note in (
        "absent: training log (train/log)",
        "absent: evaluation summary (evaluation/summary.json)",
        "absent: judgments (judgments/)",
        "absent: cost: no stage recorded counts.cost_usd",
    ):
        assert note in text
    assert text.count("<td>not run</td>") == 4  # judge, aggregate, train, evaluate
    assert write_plots(run_dir) == []


def test_a_run_stopped_after_judging_gets_its_judge_figures_from_the_judgments(tmp_path):
    run_dir = make_run(tmp_path / "run", done=("sample", "pair", "judge"))
    page = parse(write_report(run_dir))
    assert {"position_bias.png", "judge_agreement.png", "length_relation.png"} == set(page.images)


def test_an_unreadable_piece_is_a_note_not_a_crash(tmp_path):
    run_dir = make_run(tmp_path / "run", method="dpo")
    (run_dir / "train" / "log" / "state.json").write_text("{not json")
    text = write_report(run_dir).read_text()
    assert "absent: could not be read: JSONDecodeError" in text
    assert "win_rate.png" in text  # the other sections are intact


def test_user_text_is_escaped(tmp_path):
    run_dir = make_run(tmp_path / "run", prompt=f"Explain {SCRIPT} please")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["stages"]["train"].update(status="failed", error=f"ValueError: bad {SCRIPT}")
    manifest["pipeline"] = f"demo{SCRIPT}"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    text = write_report(run_dir).read_text()
    assert "<script" not in text
    assert text.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") >= 3


def test_write_plots_and_length_drift(tmp_path):
    run_dir = make_run(tmp_path / "run", method="dpo")
    paths = write_plots(run_dir)
    plot_dir = run_dir / "evaluation" / "plots"
    assert paths == [
        plot_dir / "training_curves.png",
        plot_dir / "win_rate.png",
        plot_dir / "length_drift.png",
    ]
    for path in paths:
        assert_png(path)
    drift = length_drift(run_dir)
    assert drift["n"] == 3
    assert drift["policy"] == {
        "mean_chars": 4.3,  # "Apple." "Hi" "1 2 3"
        "median_chars": 5.0,
        "mean_words": 1.7,
        "median_words": 1.0,
    }
    assert drift["reference"]["mean_chars"] == 15.0  # 20, 12, 13
    assert drift["change"]["mean_chars"] == -10.7
    assert drift["change"]["mean_chars_ratio"] == 0.287
    with pytest.raises(ConfigError, match="no evaluation dataset"):
        length_drift(make_run(tmp_path / "early", done=("sample",)))


def test_cost_per_night_reads_the_sibling_nights(tmp_path):
    nights = tmp_path / "outputs" / "demo" / "nightly"
    for date in ("2026-03-02", "2026-03-01"):
        make_run(nights / date, extra={"nightly": {"date": date}})
    make_run(nights / "2026-03-03", done=("sample",), extra={"nightly": {"date": "2026-03-03"}})
    (nights / "scratch").mkdir()  # no manifest: not a night
    run_dir = nights / "2026-03-02"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert nightly_costs(run_dir, manifest) == [
        ("2026-03-01", 0.054),
        ("2026-03-02", 0.054),
        ("2026-03-03", 0.0),
    ]
    page = parse(write_report(run_dir))
    assert "cost_per_night.png" in page.images
    assert_png(run_dir / "report" / "cost_per_night.png")
    assert nightly_costs(run_dir, {"stages": {}}) is None  # not a nightly run


def test_cli_report(tmp_path):
    run_dir = make_run(tmp_path / "run")
    done = run_cli("report", str(run_dir), "--out", str(tmp_path / "out"), timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "out" / "index.html")
    assert (tmp_path / "out" / "win_rate.png").is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    failed = run_cli("report", str(empty), timeout=300)
    assert failed.returncode == 2
    assert "no manifest.json here" in failed.stderr
    assert not (empty / "report").exists()
