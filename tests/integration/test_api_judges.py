"""OpenAI and Anthropic backends against a real HTTP server on 127.0.0.1 that injects faults."""

import asyncio
import gc
import http.client
import json
import sys
import time
import warnings

import pytest
from datasets import Dataset
from datasets_for_tests import pairs

from rlaif.config import (
    AggregateConfig,
    AnthropicJudgeConfig,
    JudgeConfig,
    OpenAIJudgeConfig,
    Price,
)
from rlaif.errors import ConfigError
from rlaif.judges import Budget, JudgeRequest, build_judge
from rlaif.judges.api import FatalJudgeError
from rlaif.judging.store import JudgmentStore
from rlaif.stages import aggregate, judge
from rlaif.testing.loopback import LoopbackJudgeServer


@pytest.fixture
def server():
    with LoopbackJudgeServer(hang_s=3.0) as srv:
        yield srv


def openai_cfg(server, **kw):
    base = {
        "model": "judge-model",
        "base_url": server.openai_url,
        "api_key_env": None,
        "timeout_s": 1.0,
        "max_retries": 3,
        "max_concurrency": 8,
    }
    return OpenAIJudgeConfig(**{**base, **kw})


def anthropic_cfg(server, **kw):
    base = {
        "model": "judge-model",
        "base_url": server.url,
        "api_key_env": None,
        "timeout_s": 1.0,
        "max_retries": 3,
        "rubric": "helpful_harmless_json",
    }
    return AnthropicJudgeConfig(**{**base, **kw})


def run(cfg, requests, budget=None):
    results = {}
    build_judge(cfg).run(requests, results.__setitem__, budget or Budget())
    return [results.get(i) for i in range(len(requests))]


def req(prompt, first="short", second="a much longer answer"):
    return JudgeRequest(prompt=prompt, first=first, second=second)


@pytest.mark.parametrize(
    "rubric", ["helpful_harmless", "helpful_harmless_json", "helpful_harmless_cot"]
)
def test_openai_reads_every_verdict_kind(server, rubric):
    out = run(openai_cfg(server, rubric=rubric), [req("q"), req("q", "longer answer", "s")])
    assert [v.status for v in out] == ["ok", "ok"]
    if rubric == "helpful_harmless":
        assert out[0].p_first == pytest.approx(0.8) and out[1].p_first == pytest.approx(0.2)
        assert out[0].label_mass == pytest.approx(0.9)
    else:
        assert [v.p_first for v in out] == [1.0, 0.0]
    assert out[0].input_tokens > 0 and out[0].output_tokens >= 1


@pytest.mark.parametrize("rubric", ["helpful_harmless_json", "helpful_harmless_cot"])
def test_anthropic_reads_json_and_parse(server, rubric):
    out = run(anthropic_cfg(server, rubric=rubric), [req("q"), req("q", "longer answer", "s")])
    assert [(v.status, v.verdict) for v in out] == [("ok", "A"), ("ok", "B")]


def test_transient_faults_are_retried_until_they_succeed(server):
    requests = [req("[[429:2]]"), req("[[500:2]]"), req("[[hang:1]]"), req("[[garbage:1]]")]
    out = run(openai_cfg(server), requests)
    assert [v.status for v in out] == ["ok"] * 4
    assert sorted(server.attempts.values()) == [2, 2, 3, 3]
    assert server.served[429] == 2 and server.served[500] == 2


def test_retries_give_up_with_the_reason(server):
    out = run(openai_cfg(server, max_retries=2), [req("[[always500]]"), req("fine")])
    assert out[0].status == "error"
    assert "gave up after 3 attempts: InternalServerError 500" in out[0].error
    assert out[1].status == "ok"


def test_refusals_and_unreadable_answers_are_recorded(server):
    out = run(
        openai_cfg(server, rubric="helpful_harmless_json"), [req("[[refuse]]"), req("[[nonsense]]")]
    )
    assert out[0].status == "refused" and "can't help" in out[0].raw_output
    assert out[1].status == "invalid" and "cannot decide" in out[1].raw_output
    out = run(anthropic_cfg(server), [req("[[refuse]]")])
    assert out[0].status == "refused"


def test_auth_error_stops_at_once(server, monkeypatch):
    monkeypatch.setenv("RLAIF_TEST_KEY", "sk-test-wrong")
    requests = [req("[[401]]")] + [req(f"q{i}") for i in range(30)]
    with pytest.raises(FatalJudgeError, match="answered AuthenticationError 401.*check the key"):
        run(openai_cfg(server, max_concurrency=1, api_key_env="RLAIF_TEST_KEY"), requests)
    assert server.requests < 5


def test_missing_key_variable_is_named(monkeypatch, server):
    monkeypatch.delenv("RLAIF_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="RLAIF_NO_SUCH_KEY \\(api_key_env\\) is not set"):
        build_judge(openai_cfg(server, api_key_env="RLAIF_NO_SUCH_KEY"))


def test_unsupported_reading_is_a_config_error(server):
    with pytest.raises(ConfigError, match="anthropic backend cannot do"):
        build_judge(anthropic_cfg(server, rubric="helpful_harmless"))


def test_concurrency_is_bounded(server):
    server.latency_s = 0.2
    start = time.monotonic()
    out = run(openai_cfg(server, max_concurrency=4), [req(f"q{i}") for i in range(16)])
    elapsed = time.monotonic() - start
    assert all(v.status == "ok" for v in out)
    assert server.peak_in_flight == 4
    assert 0.75 <= elapsed < 2.0  # 4 waves of 0.2 s


@pytest.mark.parametrize("keep_open", [False, True])
def test_a_judge_kept_open_reuses_its_connections_across_runs(server, keep_open):
    """A Ray actor or a live reward calls ``run`` per batch: kept open, a judge answers every
    batch over the connections it opened for the first."""
    judge = build_judge(openai_cfg(server, max_concurrency=4))
    if keep_open:
        judge.keep_open()
    server.latency_s = 0.05
    for batch in range(3):
        got = {}
        judge.run([req(f"b{batch} q{i}") for i in range(8)], got.__setitem__, Budget())
        assert [got[i].status for i in range(8)] == ["ok"] * 8
    assert server.requests == 24
    if keep_open:
        assert server.connections <= 4
    else:
        assert server.connections >= 3 * 4 - 1  # each run opens its own (the probe's is reused)


def test_requests_per_minute_limit_avoids_429s():
    with LoopbackJudgeServer(max_per_second=12) as strict:
        start = time.monotonic()
        out = run(openai_cfg(strict, requests_per_minute=600), [req(f"q{i}") for i in range(30)])
        rate = 30 / (time.monotonic() - start)
        assert all(v.status == "ok" for v in out)
        assert strict.served[429] == 0
        assert 8.0 <= rate <= 10.5  # 600/min is 10/s
    with LoopbackJudgeServer(max_per_second=12) as strict:
        run(openai_cfg(strict), [req(f"q{i}") for i in range(30)])
        assert strict.served[429] > 0  # the same load without the limit trips the server


def test_budget_stops_new_calls(server):
    cfg = openai_cfg(
        server, max_concurrency=1, price=Price(input_per_mtok=1000.0, output_per_mtok=1000.0)
    )
    budget = Budget(max_cost_usd=0.5)
    out = run(cfg, [req(f"q{i}") for i in range(20)], budget)
    done = [v for v in out if v is not None]
    per_call = done[0].cost_usd
    assert per_call == pytest.approx((done[0].input_tokens + done[0].output_tokens) / 1000)
    assert len(done) == pytest.approx(0.5 / per_call, abs=1.0)
    assert server.requests == len(done) < 20
    assert budget.spent >= 0.5


def test_stage_caches_across_runs_and_records_failures(server, tmp_path):
    cfg = JudgeConfig(judges=[openai_cfg(server, name="api", max_retries=1)])
    data = pairs([f"q{i}" for i in range(10)] + ["[[always500]]"])
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        first = judge(data, cfg, store=store)
        calls = server.requests
        second = judge(data, cfg, store=store)
    ok = [r for r in first if r["status"] == "ok"]
    assert len(ok) == 20 and all(r["p_a"] == pytest.approx(0.2) for r in ok)
    assert [r["status"] for r in first if "always500" in r["prompt"]] == ["error", "error"]
    # the second run asks only the two failed judgments again (two attempts each)
    assert server.requests - calls == 4
    assert sum(second["cached"]) == 20


def test_stage_keeps_what_was_done_before_a_fatal_error(server, tmp_path):
    cfg = JudgeConfig(judges=[openai_cfg(server, max_concurrency=1, api_key_env=None)])
    data = pairs([f"q{i}" for i in range(5)] + ["[[401]]"])
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        with pytest.raises(FatalJudgeError):
            judge(data, cfg, store=store)
        assert len(store) == 10


def test_stage_budget_marks_rest_skipped(server, tmp_path):
    cfg = JudgeConfig(
        judges=[
            openai_cfg(
                server, max_concurrency=1, price=Price(input_per_mtok=1000.0, output_per_mtok=0.0)
            )
        ],
        max_cost_usd=0.3,
    )
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(pairs([f"q{i}" for i in range(10)]), cfg, store=store)
        stored = len(store)
    statuses = out["status"]
    assert 0 < statuses.count("ok") < 20
    assert statuses.count("skipped") == 20 - statuses.count("ok") == 20 - stored
    assert "budget max_cost_usd=0.3 reached" in out["error"][statuses.index("skipped")]


def test_tokens_per_minute_limit_paces_requests(server):
    start = time.monotonic()
    run(openai_cfg(server), [req(f"q{i}") for i in range(20)])
    unlimited = time.monotonic() - start
    start = time.monotonic()
    # about 130 tokens a request; 60k a minute is 1k a second, one second may burst
    out = run(openai_cfg(server, tokens_per_minute=60_000), [req(f"r{i}") for i in range(20)])
    limited = time.monotonic() - start
    assert all(v.status == "ok" for v in out)
    assert unlimited < 0.8 and limited >= 1.2


@pytest.mark.parametrize(
    ("kind", "rubric"),
    [
        ("openai", "listwise_helpful"),
        ("openai", "listwise_helpful_json"),
        ("anthropic", "listwise_helpful_json"),
    ],
)
def test_listwise_rubrics_rank_a_prompts_answers_in_one_call_per_order(
    server, tmp_path, kind, rubric
):
    answers = ["a long answer " * 6, "short", "a middling answer", "tiny"]
    rows = [
        {
            "pair_id": f"p:{i}-{j}",
            "prompt_id": "p",
            "prompt": "Which?",
            "index_a": i,
            "index_b": j,
            "response_a": answers[i],
            "response_b": answers[j],
        }
        for i in range(4)
        for j in range(i + 1, 4)
    ]
    make = openai_cfg if kind == "openai" else anthropic_cfg
    cfg = JudgeConfig(judges=[make(server, rubric=rubric)])
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        out = judge(Dataset.from_list(rows), cfg, store=store)
    assert server.requests == 2 and set(out["status"]) == {"ok"}
    # the loopback judge prefers the shorter answer: every pair, both orders shown
    for row in out:
        shorter_first = len(row["response_a"]) < len(row["response_b"])
        assert (row["p_a"] > 0.5) == shorter_first
    assert sorted(out["order"]) == ["ab"] * 6 + ["ba"] * 6
    prefs = aggregate(out, AggregateConfig(selection="best_vs_worst"))
    assert prefs[0]["chosen"][0]["content"] == "tiny"


def test_the_loopback_server_answers_without_a_delayed_ack_stall(server):
    """Its answers' head and body go out in two writes; with Nagle's algorithm on, each
    answer would wait for the client's delayed ACK (40 ms), and every throughput figure
    measured against the server would be the stall's, not the client's."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    body = json.dumps({"model": "judge-model", "messages": [{"role": "user", "content": "q"}]})
    start = time.monotonic()
    for _ in range(20):
        connection.request(
            "POST", "/v1/chat/completions", body, {"content-type": "application/json"}
        )
        assert connection.getresponse().read()
    connection.close()
    assert time.monotonic() - start < 0.4  # 20 stalls alone would take 0.8 s


def test_a_kept_open_judge_shuts_its_connections_when_dropped(server):
    """A live reward or a Ray actor keeps its judge open for the process's life; when the
    judge goes, its HTTP client closes instead of a garbage collector warning about it."""
    judge = build_judge(openai_cfg(server))
    judge.keep_open()
    got = {}
    judge.run([req("q")], got.__setitem__, Budget())
    assert got[0].status == "ok"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del judge
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_kept_open_judge_dropped_inside_an_event_loop_closes_all_the_same(server):
    """A reward server's event loop may be running when a judge goes: its session's own
    loop cannot run there, so it is closed from a thread of its own."""
    held = [build_judge(openai_cfg(server))]
    held[0].keep_open()
    got = {}
    held[0].run([req("q")], got.__setitem__, Budget())

    async def drop() -> None:
        held.clear()
        gc.collect()

    errors = []
    hook, sys.unraisablehook = sys.unraisablehook, errors.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            asyncio.run(drop())
    finally:
        sys.unraisablehook = hook
    assert errors == []
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_refused_connection_is_named_as_one_not_as_a_timeout():
    """The SDKs' aiohttp transport reports a refused connection as a timeout; the probe names
    the judge unreachable and the error says what failed."""
    with LoopbackJudgeServer() as gone:
        url = gone.openai_url
    judge = build_judge(openai_cfg(gone, base_url=url, max_retries=0))
    with pytest.raises(FatalJudgeError, match="cannot reach") as raised:
        judge.run([req("q")], {}.__setitem__, Budget())
    assert "ConnectionRefusedError" in str(raised.value) or "Cannot connect" in str(raised.value)
    assert "timed out" not in str(raised.value)
