"""Prompt caching: every shipped rubric puts what a prompt's requests share first, the
requests mark it for the provider's cache without changing a judgment's key, cached tokens
are priced apart, and a prompt's first request goes out alone."""

import asyncio
import json

import pytest

from rlaif.config import AnthropicJudgeConfig, OpenAIJudgeConfig, Price
from rlaif.hashing import stable_hash
from rlaif.judges import JudgeRequest
from rlaif.judges.anthropic import AnthropicJudge
from rlaif.judges.openai import OpenAIJudge
from rlaif.judges.prompt_cache import CacheFirst, Rates, prefix_group
from rlaif.rubrics import list_rubrics, load_rubric

HISTORY = " ".join(f"Turn {i}: we talked about keeping basil fresh." for i in range(120))
PROMPT = f"{HISTORY}\nPROMPT-END: so what should I do now?"


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key-0000000000")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def request(first="ANSWER-ONE is short.", second="ANSWER-TWO is longer than that.", **kw):
    return JudgeRequest(PROMPT, first, second, **kw)


@pytest.mark.parametrize("path", list_rubrics(), ids=lambda p: p.stem)
def test_every_shipped_rubric_renders_what_a_prompt_shares_before_the_answers(path):
    rubric = load_rubric(str(path))
    answers = ("ANSWER-ONE a", "ANSWER-TWO b", "ANSWER-THREE c")
    shown = answers if rubric.mode == "listwise" else ()
    items = ("ITEM-ONE", "ITEM-TWO") if rubric.mode == "checklist_items" else ()
    reference = "REFERENCE-TEXT" if rubric.needs_reference else None
    last = rubric.messages(PROMPT, *answers[:2], reference, shown, items)[-1]["content"]
    per_rubric, per_prompt = rubric.shared_prefixes(last, PROMPT, reference, shown, items)
    shared = last[:per_prompt]
    assert "PROMPT-END" in shared and "ANSWER" not in shared
    assert all(i in shared for i in items) and (reference is None or reference in shared)
    assert "Turn 0" not in last[:per_rubric] and per_rubric <= per_prompt
    if rubric.mode != "checklist":  # the checklist writer sees no answer at all
        assert "ANSWER-ONE" in last[per_prompt:]


def anthropic(**cache):
    cfg = AnthropicJudgeConfig(model="claude-x", rubric="helpful_harmless_json", **cache)
    return AnthropicJudge(cfg)


def test_anthropic_marks_the_shared_prefix_and_the_key_stays_the_same():
    on, off = anthropic(), anthropic(prompt_cache={"enabled": False})
    assert on.caches() and not off.caches()  # the provider's own API: on by default
    assert on.identity() == off.identity()
    req = request()
    body = on.body(req)
    assert body["system"] == off.body(req)["system"]  # the system alone is too short to cache
    blocks = body["messages"][-1]["content"]
    text = "".join(b["text"] for b in blocks)
    assert text == off.body(req)["messages"][-1]["content"]  # the same words, in blocks
    marked = [b for b in blocks if "cache_control" in b]
    assert [b["cache_control"] for b in marked] == [{"type": "ephemeral"}]
    assert "PROMPT-END" in marked[0]["text"] and marked[0]["text"].endswith("<answer_A>\n")
    assert "ANSWER" not in marked[0]["text"] and "ANSWER-ONE" in blocks[-1]["text"]
    # the other order and another pair of the prompt mark the same prefix
    other = on.body(request("ANSWER-THREE", "ANSWER-ONE is short."))
    assert other["messages"][-1]["content"][0] == blocks[0]
    # a short prompt is not worth a breakpoint
    short = on.body(JudgeRequest("Hi?", "a", "b"))
    assert isinstance(short["messages"][-1]["content"], str)
    # a prompt asked once does not pay for a write
    assert isinstance(on.body(req, sharing=1)["messages"][-1]["content"], str)
    # through provider batches the cache lives an hour, and writes cost 2x instead of 1.25x:
    # worth it from three requests about a prompt
    batched = anthropic(batch={"enabled": True}, price={"input_per_mtok": 3, "output_per_mtok": 15})
    blocks = batched.body(req, sharing=3)["messages"][-1]["content"]
    mark = next(b for b in blocks if "cache_control" in b)
    assert mark["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert isinstance(batched.body(req, sharing=2)["messages"][-1]["content"], str)
    assert batched.rates().cache_write == pytest.approx(6.0)


def test_a_server_gets_cache_fields_only_when_asked():
    local = dict(model="m", rubric="helpful_harmless_json", base_url="http://127.0.0.1:9/v1")
    assert not OpenAIJudge(OpenAIJudgeConfig(api_key_env=None, **local)).caches()
    asked = OpenAIJudgeConfig(api_key_env=None, prompt_cache={"enabled": True}, **local)
    assert OpenAIJudge(asked).caches()


def test_openai_names_a_prompts_requests_one_cache_and_keys_nothing_new():
    judge = OpenAIJudge(OpenAIJudgeConfig(model="gpt-4o-mini", rubric="helpful_harmless_json"))
    plain = OpenAIJudge(
        OpenAIJudgeConfig(
            model="gpt-4o-mini", rubric="helpful_harmless_json", prompt_cache={"enabled": False}
        )
    )
    assert judge.identity() == plain.identity()
    a, b = judge.body(request()), judge.body(request("ANSWER-THREE", "ANSWER-ONE"))
    assert a["prompt_cache_key"] == b["prompt_cache_key"]
    other = judge.body(JudgeRequest(PROMPT + " And more?", "x", "y"))
    assert other["prompt_cache_key"] != a["prompt_cache_key"]
    assert {k: v for k, v in a.items() if k != "prompt_cache_key"} == plain.body(request())
    assert stable_hash(judge.render(request())) == stable_hash(plain.render(request()))


def test_cached_and_written_tokens_are_priced_apart():
    rates = Rates(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75)
    # 1,000 input tokens: 600 read, 300 written, 100 fresh; 10 out
    assert rates.cost(1000, 10, 600, 300) == pytest.approx(
        (100 * 3.0 + 600 * 0.3 + 300 * 3.75 + 10 * 15.0) / 1e6
    )
    assert rates.cost(1000, 10) == pytest.approx((1000 * 3.0 + 10 * 15.0) / 1e6)
    claude = anthropic(price={"input_per_mtok": 3.0, "output_per_mtok": 15.0}).rates()
    assert (claude.cached_input, claude.cache_write) == pytest.approx((0.3, 3.75))
    gpt = OpenAIJudge(
        OpenAIJudgeConfig(model="gpt-5", price=Price(input_per_mtok=1.25, output_per_mtok=10))
    ).rates()
    assert (gpt.cached_input, gpt.cache_write) == pytest.approx((0.625, 1.25))
    own = Price(input_per_mtok=1.25, output_per_mtok=10, cached_input_per_mtok=0.125)
    assert OpenAIJudge(OpenAIJudgeConfig(model="gpt-5", price=own)).rates().cached_input == 0.125


def test_a_prompts_first_request_goes_alone_and_the_rest_once_it_is_answered():
    groups = ["p1", "p1", "p1", "p2", "p2", "p3"]
    order = CacheFirst(groups)
    sent: list[int] = []

    async def run() -> None:
        async def worker() -> None:
            while (index := await order.take()) is not None:
                leader = groups.index(groups[index])
                assert index == leader or leader in answered  # never before its prompt's first
                sent.append(index)
                await asyncio.sleep(0.01)
                answered.add(index)
                order.answered(index)

        await asyncio.gather(*(worker() for _ in range(4)))

    answered: set[int] = set()
    asyncio.run(run())
    assert sorted(sent) == list(range(6))
    assert sent[:3] == [0, 3, 5]  # the prompts' first requests fill the wait


def test_requests_of_one_prompt_share_a_group_whatever_their_answers():
    judge = anthropic()
    groups = {
        prefix_group(judge.render(r), judge.shared(r)[1])
        for r in (request(), request("ANSWER-THREE", "ANSWER-ONE"), request("x", "y"))
    }
    assert len(groups) == 1
    other = JudgeRequest(PROMPT.replace("basil", "mint"), "x", "y")
    assert prefix_group(judge.render(other), judge.shared(other)[1]) not in groups
    assert json.dumps(judge.body(request()))  # what is sent is plain JSON
