"""Prompt caching end to end against the loopback server, which reports cached tokens as
OpenAI and Anthropic do: long multi-turn prompts judged in both orders by the real SDK
clients, the cached tokens stored with each judgment and priced apart, the same keys as
without caching, provider batches asking for the hour-long cache, and the estimate counting
what the cache will read."""

import itertools

import pytest
from datasets import Dataset

from rlaif.config import (
    AnthropicJudgeConfig,
    JudgeConfig,
    OpenAIJudgeConfig,
    PipelineConfig,
)
from rlaif.judges import Budget
from rlaif.judging.store import JudgmentStore
from rlaif.run.datasets_io import save_atomic
from rlaif.run.estimate import estimate
from rlaif.run.run_dir import RunDir
from rlaif.stages import judge
from rlaif.stages.judge import prompt_cache_counts
from rlaif.testing.batch_server import LoopbackBatchServer

PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}
ANSWERS = 4  # 6 pairs, 12 requests a prompt in both orders


def conversation(p: int) -> list[dict[str, str]]:
    """A long multi-turn history (about 2,500 tokens) ending with the user's question."""
    turns = []
    for t in range(12):
        turns.append({"role": "user", "content": f"Chat {p}, question {t}: " + "why? " * 70})
        turns.append({"role": "assistant", "content": f"Answer {t}: " + "because. " * 60})
    return [*turns, {"role": "user", "content": f"Chat {p}: so, in short?"}]


def night(prompts: int = 3) -> Dataset:
    rows = []
    for p in range(prompts):
        texts = [f"Reply {i}: " + "ok " * (4 * i + 1) for i in range(ANSWERS)]
        for i, j in itertools.combinations(range(ANSWERS), 2):
            rows.append(
                {"pair_id": f"c{p}:{i}-{j}", "prompt_id": f"c{p}", "prompt": conversation(p),
                 "index_a": i, "index_b": j, "response_a": texts[i], "response_b": texts[j]}
            )  # fmt: skip
    return Dataset.from_list(rows)


def spec(server, provider: str, **extra):
    common = {
        "name": "cached",
        "model": "judge-model",
        "api_key_env": None,
        "rubric": "helpful_harmless_json",
        "price": PRICE,
        "prompt_cache": {"enabled": True},
        "max_concurrency": 8,
        **extra,
    }
    if provider == "openai":
        return OpenAIJudgeConfig(base_url=server.openai_url, **common)
    return AnthropicJudgeConfig(base_url=server.url, **common)


@pytest.fixture
def server():
    with LoopbackBatchServer() as srv:
        yield srv


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_prompts_requests_after_its_first_read_the_cache_and_pay_less(server, tmp_path, provider):
    pairs = night()
    cfg = JudgeConfig(judges=[spec(server, provider)])
    with JudgmentStore(tmp_path / "on.sqlite") as store:
        rows = judge(pairs, cfg, store=store, budget=Budget())
    assert set(rows["status"]) == {"ok"} and len(rows) == 2 * len(pairs)
    # what the provider reported is what was stored
    assert sum(rows["input_tokens"]) == server.input_tokens
    assert sum(rows["cached_input_tokens"]) == server.cached_tokens > 0
    assert sum(w or 0 for w in rows["cache_write_tokens"]) == server.cache_write_tokens
    # each prompt's first request went alone and missed; every other one read the prefix
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r)
    for got in by_prompt.values():
        misses = [r for r in got if not r["cached_input_tokens"]]
        assert len(misses) == 1
        later = [r for r in got if r["cached_input_tokens"]]
        share = sum(r["cached_input_tokens"] for r in later) / sum(r["input_tokens"] for r in later)
        assert share >= 0.9
        if provider == "anthropic":  # the first request wrote the prefix the others read
            assert misses[0]["cache_write_tokens"] == later[0]["cached_input_tokens"]
        else:  # OpenAI reports no writes
            assert misses[0]["cache_write_tokens"] is None
    # priced apart: what the calls cost against the same calls at the full input price
    full = sum(r["input_tokens"] * 3.0 + r["output_tokens"] * 15.0 for r in rows) / 1e6
    saved = sum(r["cache_saved_usd"] for r in rows if r["cache_saved_usd"] is not None)
    assert sum(rows["cost_usd"]) == pytest.approx(full - saved)
    read = 0.3 if provider == "anthropic" else 1.5  # the providers' default shares of 3.0
    written = sum(w or 0 for w in rows["cache_write_tokens"])
    assert saved == pytest.approx((server.cached_tokens * (3.0 - read) - written * 0.75) / 1e6)
    counts = prompt_cache_counts(rows)
    assert counts["cached_share"] >= 0.7
    assert counts["saved_usd"] == pytest.approx(saved, abs=1e-6)

    # caching changes no judgment's key: a judge without it finds every answer stored
    off = JudgeConfig(judges=[spec(server, provider, prompt_cache={"enabled": False})])
    asked = server.requests
    with JudgmentStore(tmp_path / "on.sqlite") as store:
        again = judge(pairs, off, store=store, budget=Budget())
    assert server.requests == asked and all(again["cached"])
    assert sorted(again["key"]) == sorted(rows["key"])


def test_provider_batches_ask_for_the_hour_long_cache_and_pay_its_writes(server, tmp_path):
    pairs = night(prompts=2)
    cfg = JudgeConfig(judges=[spec(server, "anthropic", batch={"enabled": True})])
    with JudgmentStore(tmp_path / "b.sqlite") as store:
        judge(pairs, cfg, store=store, budget=Budget(), batch_dir=tmp_path / "batches")
        server.complete_batches()
        rows = judge(pairs, cfg, store=store, budget=Budget(), batch_dir=tmp_path / "batches")
    assert set(rows["status"]) == {"ok"}
    marks = [
        block["cache_control"]
        for batch in server.batches.values()
        for request in batch.requests
        for block in request["body"]["messages"][-1]["content"]
        if "cache_control" in block
    ]
    assert marks and all(m == {"type": "ephemeral", "ttl": "1h"} for m in marks)
    # written at 2x the input price, read at 0.1x, all at the batch discount
    for r in rows:
        fresh = r["input_tokens"] - r["cached_input_tokens"] - r["cache_write_tokens"]
        usd = fresh * 3.0 + r["cached_input_tokens"] * 0.3 + r["cache_write_tokens"] * 6.0
        assert r["cost_usd"] == pytest.approx(0.5 * (usd + r["output_tokens"] * 15.0) / 1e6)


def test_the_estimate_counts_what_the_cache_will_read(server, tmp_path):
    pairs = night()
    save_atomic(pairs, RunDir(tmp_path).output("pair"))
    got = {}
    for enabled in (True, False):
        judge_spec = spec(server, "anthropic", prompt_cache={"enabled": enabled})
        cfg = PipelineConfig(name="t", sample={"n": ANSWERS}, judge={"judges": [judge_spec]})
        got[enabled] = next(e for e in estimate(cfg, tmp_path, tmp_path / "none.sqlite"))
    on, off = got[True], got[False]
    assert on.calls == off.calls == 2 * len(pairs)
    # every call after a prompt's first reads the shared part: 11 of 12 per prompt
    shared = on.cached_input_tokens / (on.calls - 3)
    assert 0.8 * on.input_tokens / on.calls < shared < on.input_tokens / on.calls
    assert off.cached_input_tokens == 0 and off.cost_usd == pytest.approx(on.cost_uncached_usd)
    # read at 0.1x instead of 1x; each prompt's first call writes at 1.25x
    saved = (on.cached_input_tokens * (3.0 - 0.3) - 3 * shared * (3.75 - 3.0)) / 1e6
    assert on.cost_usd == pytest.approx(off.cost_usd - saved)


def test_the_estimate_reads_no_cache_where_a_prompts_requests_do_not_pay_for_its_write(
    server, tmp_path
):
    """Through provider batches the cache is written for an hour, at 2x: the two requests of
    one pair in both orders cost more with it (2x + 0.1x) than in full, so the judge sends no
    breakpoint there and the estimate counts no read; twelve requests a prompt do read it."""
    judge_spec = spec(server, "anthropic", batch={"enabled": True})
    for per_prompt, n in ((2, 2), (12, ANSWERS)):
        run = tmp_path / str(per_prompt)
        pairs = (
            night() if per_prompt == 12 else night().filter(lambda r: r["pair_id"].endswith(":0-1"))
        )
        save_atomic(pairs, RunDir(run).output("pair"))
        cfg = PipelineConfig(name="t", sample={"n": n}, judge={"judges": [judge_spec]})
        got = next(e for e in estimate(cfg, run, run / "none.sqlite"))
        assert got.calls == per_prompt * 3
        if per_prompt == 2:
            assert got.cached_input_tokens == 0
            assert got.cost_usd == pytest.approx(got.cost_uncached_usd)
        else:
            assert got.cached_input_tokens > 0.8 * got.input_tokens * 9 / 12
            assert got.cost_usd < got.cost_uncached_usd
