"""Judge backends from other packages: an entry point in the ``rlaif.judges`` group, found as
Python finds any installed package's (a ``.dist-info`` on the path), used like a built-in
one; one whose package does not import is named, with the reason, only where a config uses
it."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = """
from typing import ClassVar, Literal

from rlaif.config.judge import JudgeBase


class CoinConfig(JudgeBase):
    backend: Literal["coin"] = "coin"
    name: str = "coin"
    heads: float = 0.5
    judge_class: ClassVar[str] = "coin_judges.judge:CoinJudge"


class NeedyConfig(CoinConfig):
    backend: Literal["needy"] = "needy"
    requires: ClassVar[dict[str, str]] = {"coin_sdk_not_here": "pip install coin-sdk"}
"""

JUDGE = '''
from rlaif.judges.base import Judge, Verdict


class CoinJudge(Judge):
    """Always P(first wins) = heads."""

    def __init__(self, cfg):
        self.cfg, self.name, self.rubric = cfg, cfg.name, None

    def identity(self):
        return {"backend": "coin", "heads": self.cfg.heads}

    def provenance(self):
        return {"rubric_id": "coin", "rubric_hash": ""}

    def render(self, request):
        return [request.prompt, request.first, request.second]

    def run(self, requests, on_result, budget):
        for i, _ in enumerate(requests):
            on_result(i, Verdict(status="ok", raw_output="", p_first=self.cfg.heads))
'''


def install(site: Path, name: str, entries: str, files: dict[str, str]) -> None:
    """A package as pip leaves it: its modules and a ``.dist-info`` naming its entry point."""
    for path, text in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(textwrap.dedent(text))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[rlaif.judges]\n{entries}\n")


def python(site: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def site(tmp_path):
    site = tmp_path / "site"
    entries = "coin = coin_judges:CoinConfig\nneedy = coin_judges:NeedyConfig"
    install(site, "coin-judges", entries,
            {"coin_judges/__init__.py": PLUGIN, "coin_judges/judge.py": JUDGE})  # fmt: skip
    install(site, "broken-judges", "broken = broken_judges:Config",
            {"broken_judges/__init__.py": "import an_sdk_not_installed_here\n"})  # fmt: skip
    return site


def test_a_judge_backend_from_another_package_judges_like_a_built_in_one(site, tmp_path):
    done = python(
        site,
        f"""
        from rlaif.config import validate_pipeline
        from rlaif.judging.service import judge_records
        from rlaif.judging.store import JudgmentStore
        cfg = validate_pipeline({{"name": "p", "judge": {{"orders": "original", "judges": [
            {{"backend": "coin", "heads": 0.8}}]}}}})
        pair = {{"pair_id": "x", "prompt_id": "q", "prompt": "Hi?", "index_a": 0, "index_b": 1,
                "response_a": "Hello.", "response_b": "Hello there."}}
        for _ in range(2):  # the second time from the store
            with JudgmentStore({str(tmp_path / "j.sqlite")!r}) as store:
                rows = judge_records([pair], cfg.judge, store=store)
            print(rows[0]["judge"], rows[0]["p_a"], rows[0]["cached"])
    """,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["coin", "0.8", "False", "coin", "0.8", "True"]


def test_a_package_that_does_not_import_is_named_where_a_config_uses_it(site, tmp_path):
    done = python(
        site,
        """
        from rlaif.config import load_pipeline
        load_pipeline("rule_dpo")  # a config without it loads
        load_pipeline("rule_dpo", ["judge.judges.0.backend=broken"])
    """,
    )
    assert done.returncode != 0
    error = done.stderr.strip().splitlines()[-1]
    assert "judge.judges.0: judge backend 'broken' comes from broken-judges" in error
    assert "No module named 'an_sdk_not_installed_here'" in error


def test_a_missing_sdk_is_said_with_its_install_line_before_a_judge_is_built(site):
    done = python(
        site,
        """
        from rlaif.config import validate_pipeline
        from rlaif.judges import build_judge
        cfg = validate_pipeline({"name": "p", "judge": {"judges": [{"backend": "needy"}]}})
        build_judge(cfg.judge.judges[0])
    """,
    )
    assert done.returncode != 0
    error = done.stderr.strip().splitlines()[-1]
    assert error == (
        "rlaif.errors.ConfigError: judge 'coin' (backend needy) needs coin_sdk_not_here, which "
        "is not installed here: pip install coin-sdk"
    )
