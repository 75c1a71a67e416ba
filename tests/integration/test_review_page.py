"""``rlaif review`` in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright labels three pairs with the keyboard, reloads, finds them kept, and judge-eval
measures the run's judges against them. Skipped where no Chromium or Playwright is installed
(``.ci/run`` installs both)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import SUPPORT, run_cli
from configs_for_tests import pipeline, write

from rlaif.judging.store import JudgmentStore
from rlaif.review.queue import review_items
from rlaif.run.runner import Pipeline

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
CHROMIUM = (
    os.environ.get("RLAIF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH")


@pytest.fixture
def review(tmp_path, tiny_model):
    """A judged run and ``rlaif review`` serving it from the CLI; yields the run, the store
    and the address the command printed."""
    cfg = pipeline(tmp_path, tiny_model, sample={"n": 3})
    Pipeline.from_yaml(write(tmp_path, cfg)).run(stages=["judge"], run_dir=tmp_path / "run")
    log = (tmp_path / "review.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlaif.cli", "review", str(tmp_path / "run"), "--port", "0",
         "--reviewer", "ann"],
        stderr=log, stdout=log, env={**os.environ, "PYTHONPATH": str(SUPPORT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "?token=" not in (tmp_path / "review.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "review.log"
            ).read_text()
            time.sleep(0.1)
        address = (tmp_path / "review.log").read_text().split(" at ", 1)[1].split()[0]
        yield tmp_path / "run", Path(cfg["judge"]["cache"]), address
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_three_pairs_labelled_by_keyboard_survive_a_reload_and_reach_judge_eval(review, tmp_path):
    run_dir, store_path, address = review
    items = review_items(run_dir)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(address)
        assert page.url.endswith("/pair/0")  # the token moved into a cookie
        expected = {}
        for n, key in enumerate(("a", "b", "t")):
            page.wait_for_url(f"**/pair/{n}")
            assert page.locator("#answer-a pre").inner_text() == items[n].response_a.strip()
            page.keyboard.press(key)
            expected[items[n].key] = {"a": "A", "b": "B", "t": "tie"}[key]
        page.wait_for_url("**/pair/3")
        page.screenshot(path=str(tmp_path / "review.png"), full_page=True)

        page.goto(address.split("?")[0].rstrip("/") + "/pair/1")
        page.reload()
        assert page.locator("#saved strong").inner_text() == "B"
        assert page.locator("button.current").inner_text().startswith("B")
        assert page.locator("#progress").inner_text() == "3 labelled"
        page.keyboard.press("k")  # back to pair 0, its label kept
        page.wait_for_url("**/pair/0")
        assert page.locator("#saved strong").inner_text() == "A"
        browser.close()

    with JudgmentStore(store_path) as store:
        saved = store.human_labels()
    assert {k: v["label"] for k, v in saved.items()} == expected
    assert all(v["reviewer"] == "ann" for v in saved.values())

    done = run_cli("judge-eval", "--labels", run_dir)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pairs"] == 2  # A and B; the tie says nothing about the judges
