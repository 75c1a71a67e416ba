"""``rlaif review``'s parts: labels in the judgment store, the review order, the page's
token and form posts over real HTTP, labels replacing the judges in aggregate, and
judge-eval measuring the judges against them."""

import json
import shutil

import httpx
import pytest
from cli_runner import run_cli
from configs_for_tests import pipeline, write
from datasets import Dataset, load_from_disk

from rlaif.errors import ConfigError
from rlaif.judging.store import JudgmentStore, pair_key
from rlaif.review.queue import human_preferences, review_items
from rlaif.review.server import ReviewServer
from rlaif.run.runner import Pipeline


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    """A run judged by the shorter-answer rule, and its config."""
    tmp = tmp_path_factory.mktemp("review")
    cfg = pipeline(tmp, tiny_model, sample={"n": 3})
    Pipeline.from_yaml(write(tmp, cfg)).run(stages=["aggregate"], run_dir=tmp / "run")
    return tmp / "run", cfg


def test_a_label_is_durable_and_the_reviewers_newest_wins(tmp_path):
    path = tmp_path / "j.sqlite"
    with JudgmentStore(path) as store:
        store.put_label("k1", "A", reviewer="ann", pair_id="p:0-1")
        store.put_label("k1", "B", reviewer="ann")
        store.put_label("k2", "flag", reviewer="bob")
        with pytest.raises(ConfigError, match="one of A, B, tie, flag"):
            store.put_label("k3", "C", reviewer="ann")
    with JudgmentStore(path) as store:  # a fresh connection: it was on disk
        labels = store.human_labels()
        assert {k: v["label"] for k, v in labels.items()} == {"k1": "B", "k2": "flag"}
        assert labels["k1"]["reviewer"] == "ann"
        assert list(store.human_labels(["k2", "missing"])) == ["k2"]


def _judgment(pair, judge, order, p_a):
    return {
        "pair_id": pair, "prompt": f"prompt {pair}", "response_a": f"a {pair}",
        "response_b": f"b {pair}", "judge": judge, "order": order, "p_a": p_a,
        "status": "ok", "raw_output": "",
    }  # fmt: skip


def test_pairs_come_flips_first_then_disagreements_then_by_closeness(tmp_path):
    rows = [
        *(_judgment("agree", j, o, 0.95) for j in ("x", "y") for o in ("ab", "ba")),
        *(_judgment("near", j, o, p) for j, o, p in [("x", "ab", 0.6), ("x", "ba", 0.55)]),
        *(_judgment("nearer", j, o, 0.52) for j in ("x", "y") for o in ("ab", "ba")),
        *(_judgment("half", "x", o, p) for o, p in [("ab", 0.5), ("ba", 0.4)]),  # no flip
        _judgment("flip", "x", "ab", 0.9),
        _judgment("flip", "x", "ba", 0.1),
        *(_judgment("split", "x", o, 0.8) for o in ("ab", "ba")),
        *(_judgment("split", "y", o, 0.3) for o in ("ab", "ba")),
        {**_judgment("failed", "x", "ab", None), "status": "error"},
    ]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "judgments"))
    items = review_items(tmp_path)
    order = ["flip", "split", "nearer", "half", "near", "failed", "agree"]
    assert [i.pair_id for i in items] == order
    assert [i.reason for i in items] == ["flip", "disagree", *["close"] * 3, "rest", "rest"]
    assert items[0].soft == pytest.approx(0.5)
    assert items[5].soft is None and items[5].verdicts[0].p_a is None


def test_the_page_needs_its_token_and_saves_each_label_at_once(run):
    run_dir, cfg = run
    server = ReviewServer(run_dir, port=0, reviewer="ann").start()
    try:
        stranger = httpx.get(f"{server.url}/pair/0")
        assert stranger.status_code == 403 and "token" in stranger.text
        browser = httpx.Client(follow_redirects=True)
        first = browser.get(server.address)  # the token once, then the cookie
        assert first.status_code == 200 and str(first.url).endswith("/pair/0")
        assert browser.get(f"{server.url}/pair/1").status_code == 200
        items = review_items(run_dir)
        assert items[0].response_a in first.text or items[0].response_a.strip() == ""

        posted = browser.post(
            f"{server.url}/pair/0/label", data={"label": "B", "token": server.token}
        )
        assert posted.status_code == 200 and str(posted.url).endswith("/pair/1")
        with JudgmentStore(cfg["judge"]["cache"]) as store:  # saved before the answer came
            saved = store.human_labels()
        assert saved[items[0].key]["label"] == "B" and saved[items[0].key]["reviewer"] == "ann"
        assert "saved: <strong>B</strong>" in browser.get(f"{server.url}/pair/0").text

        wrong = browser.post(f"{server.url}/pair/2/label", data={"label": "A", "token": "guess"})
        assert wrong.status_code == 403  # the cookie alone does not let a form post
        bad = browser.post(f"{server.url}/pair/2/label", data={"label": "C", "token": server.token})
        assert bad.status_code == 400 and "one of A, B, tie, flag" in bad.text
        far = browser.post(
            f"{server.url}/pair/999/label", data={"label": "A", "token": server.token}
        )
        assert far.status_code == 404
        assert browser.get(f"{server.url}/health").json()["labelled"] == 1
    finally:
        server.stop()


def test_answers_and_verdicts_are_escaped(run, tmp_path):
    rows = [_judgment("x", "j", o, 0.7) for o in ("ab", "ba")]
    rows[0]["response_a"] = rows[1]["response_a"] = "<script>alert(1)</script></pre>"
    rows[0]["raw_output"] = "<b>A</b>"
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "judgments"))
    shutil.copyfile(run[0] / "manifest.json", tmp_path / "manifest.json")
    server = ReviewServer(tmp_path, port=0).start()
    try:
        page = httpx.get(server.address, follow_redirects=True).text
    finally:
        server.stop()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/pre&gt;" in page
    assert "<script>alert(1)" not in page and "&lt;b&gt;A&lt;/b&gt;" in page


def test_labels_override_the_judges_and_a_new_label_reruns_aggregate(run, tmp_path):
    run_dir, cfg = run
    pairs = load_from_disk(str(run_dir / "pairs"))
    uneven = [p for p in pairs if len(p["response_a"]) != len(p["response_b"])]
    longer, flagged, later = uneven[:3]
    reviewed = run_dir.parent / "reviewed"
    config = write(tmp_path, {**cfg, "aggregate": {"ties": "keep", "human_labels": "override"}})
    with JudgmentStore(cfg["judge"]["cache"]) as store:
        longer_label = "A" if len(longer["response_a"]) > len(longer["response_b"]) else "B"
        for pair, label in ((longer, longer_label), (flagged, "flag")):
            store.put_label(pair_key(pair["prompt"], pair["response_a"], pair["response_b"]),
                            label, reviewer="ann")  # fmt: skip
    Pipeline.from_yaml(config).run(stages=["aggregate"], run_dir=reviewed)
    prefs = {p["pair_id"]: p for p in load_from_disk(str(reviewed / "preferences"))}
    judged = {p["pair_id"]: p for p in load_from_disk(str(run_dir / "preferences"))}
    chosen = prefs[longer["pair_id"]]
    # the rule preferred the shorter answer; the person the longer, and the person wins
    assert len(chosen["chosen"][0]["content"]) > len(chosen["rejected"][0]["content"])
    assert chosen["p_chosen"] == 1.0 and not chosen["tie"]
    assert judged[longer["pair_id"]]["p_chosen"] < 1.0 or judged[longer["pair_id"]]["tie"]
    assert flagged["pair_id"] in judged and flagged["pair_id"] not in prefs
    assert prefs[later["pair_id"]]["p_chosen"] == judged[later["pair_id"]]["p_chosen"]

    with JudgmentStore(cfg["judge"]["cache"]) as store:
        store.put_label(pair_key(later["prompt"], later["response_a"], later["response_b"]),
                        "tie", reviewer="bob")  # fmt: skip
    Pipeline.from_yaml(config).run(stages=["aggregate"], run_dir=reviewed)
    again = {p["pair_id"]: p for p in load_from_disk(str(reviewed / "preferences"))}
    assert again[later["pair_id"]]["tie"] and again[later["pair_id"]]["p_chosen"] == 0.5


def test_judge_eval_measures_the_run_judges_against_the_labels(tmp_path, tiny_model):
    cfg = pipeline(tmp_path, tiny_model, sample={"n": 3})
    Pipeline.from_yaml(write(tmp_path, cfg)).run(stages=["judge"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="rlaif review"):
        human_preferences(tmp_path / "run")
    items = [i for i in review_items(tmp_path / "run") if len(i.response_a) != len(i.response_b)]
    with JudgmentStore(cfg["judge"]["cache"]) as store:
        for n, item in enumerate(items[:6]):
            shorter = "A" if len(item.response_a) < len(item.response_b) else "B"
            # four agree with the shorter-answer rule, two do not
            label = shorter if n < 4 else {"A": "B", "B": "A"}[shorter]
            store.put_label(item.key, label, reviewer="ann")
        store.put_label(items[6].key, "tie", reviewer="ann")  # left out of agreement
    done = run_cli("judge-eval", "--labels", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    wrong = run_cli("judge-eval", tmp_path / "run")  # a run is not a labelled dataset
    assert wrong.returncode == 2 and f"judge-eval --labels {tmp_path / 'run'}" in wrong.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pairs"] == 6
    assert result["accuracy"]["both_orders"]["accuracy"] == pytest.approx(4 / 6, abs=1e-3)
