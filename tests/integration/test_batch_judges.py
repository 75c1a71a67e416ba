"""Batch judging through the providers' batch APIs: real SDK clients, a real HTTP server on
127.0.0.1 speaking the batch endpoints, a real SQLite store and the real ledger files."""

import json
import re
import time

import pytest
from datasets_for_tests import pairs

from rlaif.config import (
    AnthropicJudgeConfig,
    JudgeConfig,
    OpenAIJudgeConfig,
    PipelineConfig,
    Price,
)
from rlaif.judges import Budget
from rlaif.judges.api import FatalJudgeError
from rlaif.judging.batch_ledger import BatchLedger, BatchRecord
from rlaif.judging.batch_run import chunked
from rlaif.judging.store import JudgmentStore
from rlaif.run.estimate import estimate
from rlaif.stages import judge
from rlaif.testing.batch_server import LoopbackBatchServer

PRICE = Price(input_per_mtok=2.0, output_per_mtok=8.0)


@pytest.fixture
def server():
    with LoopbackBatchServer() as srv:
        yield srv


def judge_cfg(server, provider, *, rubric=None, price=PRICE, **batch):
    common = {
        "name": "batchy",
        "model": "judge-model",
        "api_key_env": None,
        "timeout_s": 2.0,
        "max_retries": 1,
        "price": price,
        "batch": {"enabled": True, **batch},
    }
    if provider == "openai":
        spec = OpenAIJudgeConfig(
            base_url=server.openai_url, rubric=rubric or "helpful_harmless", **common
        )
    else:
        spec = AnthropicJudgeConfig(
            base_url=server.url, rubric=rubric or "helpful_harmless_json", **common
        )
    return JudgeConfig(judges=[spec])


def online(cfg):
    """The same judge with batching off."""
    spec = cfg.judges[0]
    off = spec.model_copy(update={"batch": spec.batch.model_copy(update={"enabled": False})})
    return cfg.model_copy(update={"judges": [off]})


def ledger(tmp_path):
    return BatchLedger(tmp_path / "batches" / "batchy.jsonl")


def batch_bodies(server):
    return [r["body"] for b in server.batches.values() for r in b.requests]


def canonical(bodies):
    return sorted(json.dumps(b, sort_keys=True) for b in bodies)


@pytest.mark.parametrize(
    ("provider", "rubric"),
    [
        ("openai", "helpful_harmless"),
        ("openai", "helpful_harmless_json"),
        ("anthropic", None),
        ("openai", "listwise_helpful"),
        ("anthropic", "listwise_helpful_json"),
    ],
)
def test_submit_then_collect_matches_online(server, tmp_path, provider, rubric):
    cfg = judge_cfg(server, provider, rubric=rubric)
    data = pairs([f"q{i}" for i in range(4)])
    batch_dir = tmp_path / "batches"
    with JudgmentStore(tmp_path / "batch.sqlite") as store:
        first = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert set(first["status"]) == {"pending"} and len(store) == 0
        records = ledger(tmp_path).records()
        assert [r.batch_id for r in records] == list(server.batches)
        (record,) = records
        assert record.provider == provider and record.state == "open"
        assert (record.input_file_id is not None) == (provider == "openai")
        assert sorted(record.keys) == sorted(first["key"])
        assert all(record.batch_id in e for e in first["error"])
        assert server.online_bodies == []

        # still open: nothing is submitted again
        second = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert set(second["status"]) == {"pending"} and len(server.batches) == 1

        server.complete_batches()
        third = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert set(third["status"]) == {"ok"} and not any(third["cached"])
        assert ledger(tmp_path).records()[0].state == "collected"
        assert ledger(tmp_path).records()[0].counts == {"ok": 8}

        # stored: nothing is submitted again either
        fourth = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert all(fourth["cached"]) and len(server.batches) == 1
    assert set(server.submitted.values()) == {1} and len(server.submitted) == 8

    with JudgmentStore(tmp_path / "online.sqlite") as store:
        direct = judge(data, online(cfg), store=store)
    assert canonical(server.online_bodies) == canonical(batch_bodies(server))
    assert list(direct["key"]) == list(third["key"])
    assert list(direct["p_a"]) == list(third["p_a"])
    assert list(direct["raw_output"]) == list(third["raw_output"])
    assert [r["verdict"] for r in direct] == [r["verdict"] for r in third]
    for on, off in zip(direct, third, strict=True):
        assert off["input_tokens"] == on["input_tokens"] > 0
        assert off["cost_usd"] == pytest.approx(0.5 * on["cost_usd"])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_expired_batch_keeps_partial_results_and_resubmits_the_rest(server, tmp_path, provider):
    cfg = judge_cfg(server, provider)
    data = pairs([f"q{i}" for i in range(5)])
    batch_dir = tmp_path / "batches"
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        first = judge(data, cfg, store=store, batch_dir=batch_dir)
        (batch_id,) = server.batches
        kept = [r["custom_id"] for r in server.batches[batch_id].requests[:4]]
        server.expire_batches(done=4)

        second = judge(data, cfg, store=store, batch_dir=batch_dir)
        status = dict(zip(second["key"], second["status"], strict=True))
        assert sorted(k for k, s in status.items() if s == "ok") == sorted(kept)
        errors = [r for r in second if r["status"] == "error"]
        assert len(errors) == 6
        assert all("expired" in r["error"] and batch_id in r["error"] for r in errors)
        assert len(server.batches) == 1  # errors are asked again on the next run

        third = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert len(server.batches) == 2
        resubmitted = [r["custom_id"] for r in server.batches[server.open_batches()[0]].requests]
        assert sorted(resubmitted) == sorted(r["key"] for r in errors)
        assert sorted(third["status"]) == ["ok"] * 4 + ["pending"] * 6

        server.complete_batches()
        fourth = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert set(fourth["status"]) == {"ok"}
    assert {k: server.submitted[k] for k in kept} == dict.fromkeys(kept, 1)
    assert sorted(server.submitted.values()) == [1] * 4 + [2] * 6
    assert sorted(first["key"]) == sorted(server.submitted)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_failed_requests_in_a_batch_are_errors_asked_again(server, tmp_path, provider):
    cfg = judge_cfg(server, provider)
    data = pairs(["fine", "[[batch_error]] breaks", "also fine"])
    batch_dir = tmp_path / "batches"
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        judge(data, cfg, store=store, batch_dir=batch_dir)
        server.complete_batches()
        second = judge(data, cfg, store=store, batch_dir=batch_dir)
        by_prompt = {(r["prompt"], r["order"]): r for r in second}
        assert [by_prompt[("fine", o)]["status"] for o in ("ab", "ba")] == ["ok", "ok"]
        failed = [by_prompt[("[[batch_error]] breaks", o)] for o in ("ab", "ba")]
        assert [r["status"] for r in failed] == ["error", "error"]
        assert all("failed in the batch" in r["error"] for r in failed)
        assert all("the judge failed on this request" in r["error"] for r in failed)
        assert ledger(tmp_path).records()[0].counts == {"ok": 4, "error": 2}

        third = judge(data, cfg, store=store, batch_dir=batch_dir)
        (new_batch,) = server.open_batches()
        retried = sorted(r["custom_id"] for r in server.batches[new_batch].requests)
        assert retried == sorted(r["key"] for r in failed)
        assert [r["status"] for r in third].count("pending") == 2


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_wait_polls_until_the_batches_end(tmp_path, provider):
    with LoopbackBatchServer(complete_after_polls=3) as server:
        cfg = judge_cfg(server, provider, wait=True, poll_seconds=0.05, max_requests=3)
        with JudgmentStore(tmp_path / "j.sqlite") as store:
            out = judge(pairs(["q0", "q1", "q2"]), cfg, store=store, batch_dir=tmp_path / "b")
        assert set(out["status"]) == {"ok"}
        assert len(server.batches) == 2  # 6 requests, at most 3 a batch
        assert all(b.polls >= 3 for b in server.batches.values())
        assert all(
            r.state == "collected" for r in BatchLedger(tmp_path / "b/batchy.jsonl").records()
        )


def test_wait_gives_up_after_max_wait(server, tmp_path):
    cfg = judge_cfg(server, "openai", wait=True, poll_seconds=0.05, max_wait_s=0.3)
    start = time.monotonic()
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(["q0"]), cfg, store=store, batch_dir=tmp_path / "b")
    assert set(out["status"]) == {"pending"}
    assert 0.3 <= time.monotonic() - start < 2.0
    assert server.batches[server.open_batches()[0]].polls >= 3


def test_budget_limits_what_is_submitted_and_counts_collected_cost(server, tmp_path):
    # about 130 input tokens a request at $1000 per million, half price: about $0.065 each
    price = Price(input_per_mtok=1000.0, output_per_mtok=0.0)
    cfg = judge_cfg(server, "openai", price=price).model_copy(update={"max_cost_usd": 0.3})
    data = pairs([f"q{i}" for i in range(10)])
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        first = judge(data, cfg, store=store, batch_dir=tmp_path / "b")
        statuses = list(first["status"])
        submitted = statuses.count("pending")
        assert 0 < submitted < 20 and statuses.count("skipped") == 20 - submitted
        assert sum(server.submitted.values()) == submitted

        server.complete_batches()
        budget = Budget(cfg.max_cost_usd)
        second = judge(data, cfg, store=store, budget=budget, batch_dir=tmp_path / "b")
    assert list(second["status"]).count("ok") == submitted
    collected = sum(c for c in second["cost_usd"] if c is not None)
    assert budget.spent == pytest.approx(collected) and not budget.allows()
    assert len(server.batches) == 1  # the budget was spent: no new batch


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_provider_outages_leave_nothing_lost(server, tmp_path, provider):
    cfg = judge_cfg(server, provider)  # max_retries=1: the SDK tries each call twice
    data = pairs(["q0", "q1"])
    batch_dir = tmp_path / "batches"
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        server.batch_faults = [500, 503]
        first = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert set(first["status"]) == {"error"} and not server.batches
        assert all(re.search(r"batch submission failed: \w+ 503", e) for e in first["error"])
        assert not ledger(tmp_path).records()

        judge(data, cfg, store=store, batch_dir=batch_dir)  # asked again: submitted now
        assert len(server.batches) == 1
        server.complete_batches()
        server.batch_faults = [502, 500]
        third = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert set(third["status"]) == {"pending"}  # could not look: still awaited

        fourth = judge(data, cfg, store=store, batch_dir=batch_dir)
        assert set(fourth["status"]) == {"ok"} and len(server.batches) == 1


def test_an_auth_error_stops_the_stage(server, tmp_path):
    server.batch_faults = [401]
    with (
        JudgmentStore(tmp_path / "j.sqlite") as store,
        pytest.raises(FatalJudgeError, match="answered AuthenticationError 401"),
    ):
        judge(pairs(["q0"]), judge_cfg(server, "openai"), store=store, batch_dir=tmp_path / "b")
    assert not server.batches


def test_without_batch_dir_the_judge_runs_online(server, tmp_path):
    cfg = judge_cfg(server, "openai")
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs(["q0", "q1"]), cfg, store=store)
    assert set(out["status"]) == {"ok"}
    assert len(server.online_bodies) == 4 and not server.batches
    assert out["cost_usd"][0] == pytest.approx(
        (out["input_tokens"][0] * 2.0 + out["output_tokens"][0] * 8.0) / 1e6
    )


def test_ledger_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "judge.jsonl"
    first = BatchLedger(path)
    first.submitted(BatchRecord("openai", "batch_1", "file-1", "id", ["k1", "k2"], 1.0))
    with path.open("a") as f:
        f.write('{"event": "submitted", "provider": "op')  # a crash mid-write
    BatchLedger(path).submitted(BatchRecord("openai", "batch_2", "file-2", "id", ["k3"], 2.0))
    again = BatchLedger(path)
    assert [r.batch_id for r in again.open("id")] == ["batch_1", "batch_2"]
    again.collected("batch_1", "completed", {"ok": 2})
    assert [r.batch_id for r in BatchLedger(path).open("id")] == ["batch_2"]
    assert BatchLedger(path).open("another judge configuration") == []


def test_batches_split_by_count_and_by_bytes():
    entries = [(f"k{i}", {}, 40) for i in range(10)]
    assert [len(c) for c in chunked(entries, max_requests=4, max_bytes=10_000)] == [4, 4, 2]
    assert [len(c) for c in chunked(entries, max_requests=100, max_bytes=100)] == [2] * 5


def test_batch_config_is_validated():
    with pytest.raises(ValueError, match="above the provider's limit of 50000"):
        OpenAIJudgeConfig(model="m", batch={"max_requests": 60_000})
    AnthropicJudgeConfig(model="m", batch={"max_requests": 60_000})
    with pytest.raises(ValueError, match="max_wait_s \\(5\\) is shorter than poll_seconds"):
        OpenAIJudgeConfig(model="m", batch={"poll_seconds": 10, "max_wait_s": 5})
    with pytest.raises(ValueError, match="discount"):
        OpenAIJudgeConfig(model="m", batch={"discount": 1.5})


def test_dry_run_estimate_prices_batch_judging_at_the_discount(server, tmp_path):
    def costs(enabled):
        spec = judge_cfg(server, "openai", enabled=enabled).judges[0]
        cfg = PipelineConfig(name="t", judge=JudgeConfig(judges=[spec]))
        return {e.stage: e.cost_usd for e in estimate(cfg, tmp_path, tmp_path / "none.sqlite")}

    online_cost, batch_cost = costs(False), costs(True)
    assert online_cost["judge"] > 0
    assert batch_cost["judge"] == pytest.approx(0.5 * online_cost["judge"])
    assert batch_cost["evaluate"] == pytest.approx(online_cost["evaluate"])  # asked online


def test_dry_run_estimate_counts_listwise_calls_per_prompt(server, tmp_path):
    def calls(rubric):
        spec = judge_cfg(server, "openai", rubric=rubric, enabled=False).judges[0]
        cfg = PipelineConfig(name="t", sample={"n": 4}, judge=JudgeConfig(judges=[spec]))
        return {e.stage: e for e in estimate(cfg, tmp_path, tmp_path / "none.sqlite")}

    pairwise, listwise = calls("helpful_harmless"), calls("listwise_helpful")
    # 4 answers: 6 pairs in both orders against 2 orders of one list, per prompt
    assert pairwise["judge"].calls == 6 * listwise["judge"].calls
    assert listwise["evaluate"].calls == pairwise["evaluate"].calls
    # a call shows all 4 answers, not 2: two more answers' tokens
    answer = PipelineConfig(name="t").sample.max_new_tokens
    per_call = [e.input_tokens / e.calls for e in (pairwise["judge"], listwise["judge"])]
    assert per_call[1] - per_call[0] >= 2 * answer


def test_nightly_with_a_batch_judge_exits_4_then_collects_on_the_next_run(
    server, tmp_path, tiny_model
):
    """Through the CLI: tonight submits and exits 4 (waiting); once the provider has finished,
    the same command collects, publishes the night's preferences and exits 0."""
    import yaml
    from cli_runner import run_cli

    from rlaif.run.run_dir import read_manifest

    config = {
        "name": "batch-night",
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "outputs"),
        "prompts": {"limit": 6, "eval_size": 2},
        "sample": {"backend": "transformers", "n": 2, "max_new_tokens": 8, "dtype": "float32"},
        "judge": judge_cfg(server, "openai").model_dump(mode="json"),
        "aggregate": {"ties": "keep"},
    }
    path = tmp_path / "night.yaml"
    path.write_text(yaml.safe_dump(config))
    night = tmp_path / "outputs" / "batch-night" / "nightly" / "2026-05-01"

    first = run_cli("nightly", path, "--date", "2026-05-01")
    assert first.returncode == 4, first.stderr
    assert "waiting" in first.stderr
    counts = read_manifest(night)["stages"]["judge"]["counts"]
    assert counts["pending"] == counts["judgments"] > 0
    assert "aggregate" not in read_manifest(night)["stages"]
    assert [json.loads(line)["batch_id"] for line in (night / "batches" / "batchy.jsonl")
            .read_text().splitlines() if "batch_id" in line]  # fmt: skip

    still = run_cli("nightly", path, "--date", "2026-05-01")
    assert still.returncode == 4, still.stderr  # the provider has not finished: nothing new sent
    server.complete_batches()
    done = run_cli("nightly", path, "--date", "2026-05-01")
    assert done.returncode == 0, done.stderr
    manifest = read_manifest(night)
    assert manifest["stages"]["judge"]["counts"]["ok"] == counts["judgments"]
    assert manifest["nightly"]["version"] == 1
    assert len(server.submitted) == counts["judgments"]
    assert set(server.submitted.values()) == {1}  # each request submitted once
    assert server.online_bodies == []  # and none asked online at full price


def test_checklists_through_provider_batches_match_online(server, tmp_path):
    """The checklists go in one batch; once collected, the items their answers are asked
    about go in the next; the scores equal the online ones."""
    writer = judge_cfg(server, "openai", rubric="checklist").judges[0]
    items = writer.model_copy(update={"name": "items", "rubric": "checklist_items"})
    cfg = JudgeConfig(judges=[writer, items], checklists={"items_judge": "items"})
    data = pairs([f"q{i}" for i in range(3)])
    batch_dir = tmp_path / "batches"
    statuses = []
    with JudgmentStore(tmp_path / "batch.sqlite") as store:
        for _ in range(3):
            rows = judge(data, cfg, store=store, batch_dir=batch_dir)
            statuses.append(set(rows["status"]))
            server.complete_batches()
    assert statuses == [{"pending"}, {"pending"}, {"ok"}] and len(server.batches) == 2
    with JudgmentStore(tmp_path / "online.sqlite") as store:
        direct = judge(data, online(cfg).model_copy(update={"judges": [
            j.model_copy(update={"batch": j.batch.model_copy(update={"enabled": False})})
            for j in cfg.judges
        ]}), store=store)  # fmt: skip
    assert list(direct["score"]) == list(rows["score"]) and None not in rows["score"]
    assert list(direct["key"]) == list(rows["key"])
