"""Running against a paid API: dry runs, budgets, the shared cache and secrets, end to end
through the CLI with the loopback server standing in for the provider."""

from pathlib import Path

import pytest
import yaml
from cli_runner import run_cli

from rlaif.run.run_dir import read_manifest
from rlaif.testing.loopback import LoopbackJudgeServer

SECRET = "sk-rlaif-test-0123456789abcdef"


@pytest.fixture
def server():
    with LoopbackJudgeServer() as srv:
        yield srv


@pytest.fixture
def api_pipeline(tmp_path, tiny_model, server) -> Path:
    config = {
        "name": "api",
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "outputs"),
        "prompts": {"limit": 6, "eval_size": 2},
        "sample": {"backend": "transformers", "n": 3, "max_new_tokens": 8, "dtype": "float32"},
        "judge": {
            "judges": [
                {
                    "name": "gpt",
                    "backend": "openai",
                    "model": "judge-model",
                    "base_url": server.openai_url,
                    "api_key_env": "RLAIF_TEST_SECRET",
                    "price": {"input_per_mtok": 2000.0, "output_per_mtok": 8000.0},
                }
            ]
        },
        "aggregate": {"ties": "keep"},
    }
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(*args, cwd: Path, **env):
    return run_cli(*args, cwd=cwd, env={"RLAIF_TEST_SECRET": SECRET, **env})


def test_dry_run_spends_nothing_then_becomes_exact(api_pipeline, tmp_path, server):
    run_dir = tmp_path / "run"
    before = cli("run", str(api_pipeline), "--run-dir", str(run_dir), "--dry-run", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    judge_line = next(line for line in before.stdout.splitlines() if line.startswith("judge "))
    # 4 training prompts x 3 pairs x 2 orders, estimated before any sampling
    assert judge_line.split()[3] == "24" and judge_line.endswith("estimate")
    assert "total: $" in before.stdout
    assert server.requests == 0 and not run_dir.exists()
    assert not (tmp_path / "outputs").exists()  # a dry run writes nothing

    assert (
        cli(
            "run", str(api_pipeline), "--run-dir", str(run_dir), "--stages", "pair", cwd=tmp_path
        ).returncode
        == 0
    )
    pairs = read_manifest(run_dir)["stages"]["pair"]["counts"]["pairs"]
    exact = cli("run", str(api_pipeline), "--run-dir", str(run_dir), "--dry-run", cwd=tmp_path)
    judge_line = next(line for line in exact.stdout.splitlines() if line.startswith("judge "))
    assert judge_line.split()[3] == str(pairs * 2) and judge_line.endswith("(pairs exist)")
    assert server.requests == 0


def test_budget_gives_partial_exit_then_resumes_without_paying_twice(
    api_pipeline, tmp_path, server
):
    run_dir = tmp_path / "run"
    args = ["run", str(api_pipeline), "--run-dir", str(run_dir), "--stages", "aggregate"]
    first = cli(
        *args,
        "--set",
        "judge.max_cost_usd=1.0",
        "--set",
        "judge.judges.0.max_concurrency=1",
        cwd=tmp_path,
    )
    assert first.returncode == 3, first.stderr
    assert "partial: stage judge stopped at the budget" in first.stderr
    manifest = read_manifest(run_dir)
    counts = manifest["stages"]["judge"]["counts"]
    assert manifest["stages"]["judge"]["status"] == "partial"
    assert counts["skipped"] > 0 and counts["ok"] > 0
    assert "aggregate" not in manifest["stages"]
    paid = server.requests
    assert paid == counts["ok"]

    second = cli(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    counts2 = read_manifest(run_dir)["stages"]["judge"]["counts"]
    assert counts2["cached"] == counts["ok"] and counts2["ok"] == counts["ok"] + counts["skipped"]
    assert server.requests - paid == counts["skipped"]

    stats = cli(
        "cache", "stats", "--store", str(tmp_path / "outputs" / "judgments.sqlite"), cwd=tmp_path
    )
    assert stats.returncode == 0
    row = next(line for line in stats.stdout.splitlines() if " ok " in line)
    assert row.split()[:2] == ["gpt", "openai"] and f" {counts2['ok']} " in row
    assert "$" in row


def test_the_key_never_reaches_disk(api_pipeline, tmp_path):
    done = cli("run", str(api_pipeline), "--stages", "aggregate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    files = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files) and len(files) > 5
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    assert "RLAIF_TEST_SECRET" in (next(p for p in files if p.name == "manifest.json")).read_text()


def test_missing_key_fails_before_any_compute(api_pipeline, tmp_path):
    done = cli("run", str(api_pipeline), cwd=tmp_path, RLAIF_TEST_SECRET="")
    assert done.returncode == 2
    assert "RLAIF_TEST_SECRET (api_key_env) is not set" in done.stderr
    assert not (tmp_path / "outputs").exists()


def test_cache_prune(tmp_path):
    from rlaif.judging.store import JudgmentStore

    store = tmp_path / "j.sqlite"
    with JudgmentStore(store) as db:
        db.put_many(
            [
                {"key": "a", "judge": "j", "status": "ok"},
                {"key": "b", "judge": "j", "status": "error"},
            ]
        )
    refused = cli("cache", "prune", "--store", str(store), cwd=tmp_path)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = cli("cache", "prune", "--store", str(store), "--status", "error", cwd=tmp_path)
    assert done.returncode == 0 and "deleted 1 judgments" in done.stdout
    with JudgmentStore(store) as db:
        assert len(db) == 1
