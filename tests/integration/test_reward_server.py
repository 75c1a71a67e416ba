"""``rlaif serve-reward``: rewards over HTTP from the judges (through the judgment store) or a
reward model, served by uvicorn on 127.0.0.1 and called with real HTTP clients: OpenRLHF's
bodies (with and without prompts, special tokens kept), verl's shim, malformed bodies, a token,
a body limit, and 32 clients at once."""

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml
from cli_runner import SUPPORT

from rlaif.config import validate_pipeline
from rlaif.integrations import http_reward
from rlaif.ops.reward_server import Rewards, RewardServer

PROMPT = "Question: name a colour.\nAnswer:"
LABEL = "a colour such as blue"


def judged(tmp_path, model=None, callable_name="prefer_shorter"):
    return {
        "name": "rewards",
        **({"model": str(model)} if model else {}),
        "output_dir": str(tmp_path / "out"),
        "judge": {
            "judges": [{"backend": "python", "callable": f"judges_for_tests:{callable_name}"}],
            "cache": str(tmp_path / "judgments.sqlite"),
        },
    }


def post(url: str, body, headers: dict | None = None) -> dict:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/get_reward", data, {"Content-Type": "application/json", **(headers or {})}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def serve(tmp_path, model, **options):
    rewards = Rewards(
        validate_pipeline(judged(tmp_path, model, options.pop("judge", "prefer_shorter")))
    )
    return rewards, RewardServer(rewards, port=0, **options).start()


@pytest.fixture
def served(tmp_path, tiny_model):
    rewards, server = serve(tmp_path, tiny_model)
    yield server.url
    server.stop()
    rewards.close()


def test_openrlhf_queries_are_judged_against_their_labels_once(served, monkeypatch):
    body = {
        "query": [PROMPT + " blue", PROMPT + " a long, winding answer about many colours"],
        "prompts": [PROMPT, PROMPT],
        "labels": [LABEL, LABEL],
    }
    first = post(served, body)
    short, long = first["rewards"]
    assert short > 0.5 > long  # the rule prefers the shorter answer to the label, and back
    assert first["scores"] == first["rewards"]
    assert first["extra_logs"]["judgments"] == 4  # 2 answers x the label x both orders
    assert first["extra_logs"]["cache_hit_rate"] == 0.0
    again = post(served, body)
    assert again["rewards"] == first["rewards"]
    assert again["extra_logs"]["cache_hit_rate"] == 1.0  # from the store, nothing asked twice

    monkeypatch.setenv("RLAIF_REWARD_URL", served)
    info = {"question": PROMPT}
    assert asyncio.run(http_reward.compute_score("rlaif/t", " blue", LABEL, info)) == short
    assert http_reward.compute_score_sync("rlaif/t", " blue", LABEL, info) == short
    answers = [" blue", " a long, winding answer about many colours"]
    batch = http_reward.compute_score_batch(["rlaif/t"] * 2, answers, [LABEL] * 2, [info] * 2)
    assert batch == [short, long]


def test_bad_requests_get_a_400_that_says_why(served):
    cases = [
        ({"prompts": [PROMPT], "responses": ["x"]}, "every prompt needs one"),
        ({"prompts": [PROMPT], "query": ["a", "b"], "labels": [LABEL]}, "one text"),
        ({"responses": ["x"]}, "'prompts'"),
        ({"prompts": [1], "responses": [2], "labels": ["c"]}, "prompts.0"),
        ({"prompts": [PROMPT], "responses": ["x"], "labels": 5}, "labels"),
        ({"prompts": [[PROMPT]], "responses": ["x"], "labels": [LABEL]}, "prompts.0"),
        ({"prompts": [[[[[[[[[[[]]]]]]]]]]]}, "nested deeper"),
        (b"not json", "malformed"),
        ([1, 2], "malformed"),
    ]
    for body, message in cases:
        with pytest.raises(urllib.error.HTTPError) as caught:
            post(served, body)
        assert caught.value.code == 400, body
        assert message in json.load(caught.value)["error"], body
    with urllib.request.urlopen(f"{served}/health", timeout=10) as response:
        assert json.load(response)["status"] == "ok"


def test_the_end_of_turn_marker_is_not_judged(served, tiny_model):
    """A finished answer (its end-of-turn marker kept, as OpenRLHF decodes it) scores as the
    same words cut short; the shorter-answer rule then ranks the two answers by their words."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    end = tokenizer.eos_token
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
    )
    short, long = "Cow.", "That would be a cow, a large grazing animal."
    label = "It is a cow, an animal on farms."
    finished = post(
        served,
        {
            "query": [templated + short + end, templated + long + end],
            "prompts": [templated, templated],
            "labels": [label, label],
        },
    )["rewards"]
    cut_short = post(
        served, {"prompts": [PROMPT, PROMPT], "responses": [short, long], "labels": [label] * 2}
    )
    assert finished == cut_short["rewards"]  # the same judgments: the prompt read back too
    assert cut_short["extra_logs"]["cache_hit_rate"] == 1.0
    assert finished[0] > 0.5 > finished[1]
    # the older body: queries alone, split at the template's generation prompt
    alone = post(served, {"query": [templated + short + end], "labels": [label]})["rewards"]
    assert alone == finished[:1]


def test_a_token_guards_the_server_and_a_body_limit_holds(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setenv("RLAIF_TEST_REWARD_TOKEN", "tok-123")
    rewards, server = serve(
        tmp_path, tiny_model, token_env="RLAIF_TEST_REWARD_TOKEN", max_body_mb=0.01
    )
    try:
        body = {"prompts": [PROMPT], "responses": [" blue"], "labels": [LABEL]}
        with pytest.raises(urllib.error.HTTPError) as caught:
            post(server.url, body)
        assert caught.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as caught:
            post(server.url, body, {"Authorization": "Bearer wrong"})
        assert caught.value.code == 401
        got = post(server.url, body, {"Authorization": "Bearer tok-123"})
        assert got["rewards"][0] > 0.5
        monkeypatch.setenv("RLAIF_REWARD_URL", server.url)
        monkeypatch.setenv("RLAIF_REWARD_TOKEN", "tok-123")  # the verl shim bears it too
        shim = http_reward.compute_score_sync("rlaif/t", " blue", LABEL, {"question": PROMPT})
        assert shim == got["rewards"][0]
        big = {**body, "responses": ["x" * 20_000]}
        with pytest.raises(urllib.error.HTTPError) as caught:
            post(server.url, big, {"Authorization": "Bearer tok-123"})
        assert caught.value.code == 413
    finally:
        server.stop()
        rewards.close()


def test_32_clients_at_once_are_scored_in_batches_not_one_by_one(tmp_path, tiny_model, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("RLAIF_TEST_CALL_LOG", str(tmp_path / "calls.jsonl"))
    rewards, server = serve(tmp_path, tiny_model, judge="slow_logged")
    try:

        def client(i: int) -> float:
            body = {"prompts": [PROMPT], "responses": [f" colour {i}"], "labels": [LABEL]}
            return post(server.url, body)["rewards"][0]

        with ThreadPoolExecutor(32) as pool:
            got = list(pool.map(client, range(32)))
        assert len(got) == 32 and all(0.0 <= r <= 1.0 for r in got)
        with urllib.request.urlopen(f"{server.url}/health", timeout=10) as response:
            batches = json.load(response)["batches"]
        assert batches < 16  # requests that arrived together were judged together
        calls = (tmp_path / "calls.jsonl").read_text().splitlines()
        asked = [c for c in calls if json.loads(c)[0] == PROMPT]  # preflight's example aside
        assert len(asked) == 32 * 2  # each answer judged once, in both orders
    finally:
        server.stop()
        rewards.close()


def test_a_reward_model_scores_without_labels(tmp_path, tiny_model):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model, num_labels=1)
    folder = tmp_path / "reward_model"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    rewards = Rewards(validate_pipeline(judged(tmp_path, tiny_model)), reward_model=folder)
    scored, _ = rewards.score([(PROMPT, " blue", None), (PROMPT, " red and green", None)])
    got = [s.value for s in scored]
    assert len(got) == 2 and got[0] != got[1]
    alone, _ = rewards.score([(PROMPT, " blue", None)])
    assert [s.value for s in alone] == pytest.approx(got[:1], abs=1e-5)  # batched or alone


def test_the_cli_serves_until_stopped(tmp_path, tiny_model):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(judged(tmp_path, tiny_model)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlaif.cli", "serve-reward", "--pipeline", str(path), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SUPPORT)},
    )
    try:
        for line in proc.stderr:
            if "serving rewards at" in line:
                url = line.split(" at ", 1)[1].strip().removesuffix("/get_reward")
                break
        else:
            pytest.fail("serve-reward ended without serving")
        got = post(url, {"prompts": [PROMPT], "responses": [" blue"], "labels": [LABEL]})
        assert got["rewards"][0] > 0.5
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_conversation_is_judged_with_its_history_however_it_comes(tmp_path, tiny_model):
    """OpenRLHF sends a templated multi-turn prompt, verl's shim the conversation itself
    (``rlaif export`` writes it as the question): the judges see the same conversation, so
    the second asks nothing."""
    import judges_for_tests as jt
    from transformers import AutoTokenizer

    rewards, server = serve(tmp_path, tiny_model, judge="shorter_seen")
    conversation = [
        {"role": "user", "content": "Plan two days in Rome."},
        {"role": "assistant", "content": "Day one: the Forum. Day two: the Vatican."},
        {"role": "user", "content": "Swap the days."},
    ]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    templated = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, *conversation],
        tokenize=False,
        add_generation_prompt=True,
    )
    answers = ["Done.", "Day one: the Vatican. Day two: the Forum, as you asked."]
    try:
        jt.CALLS.clear()
        queried = post(
            server.url,
            {"query": [templated + a for a in answers], "prompts": [templated] * 2,
             "labels": ["Swapped."] * 2},
        )  # fmt: skip
        assert {json.dumps(c[0]) for c in jt.CALLS} == {json.dumps(conversation)}
        info = {"question": conversation}
        os.environ["RLAIF_REWARD_URL"] = server.url
        asked = len(jt.CALLS)
        shim = http_reward.compute_score_batch(["t"] * 2, answers, ["Swapped."] * 2, [info] * 2)
        assert shim == queried["rewards"] and queried["rewards"][0] > 0.5
        assert len(jt.CALLS) == asked  # the same keys: read from the store
        with pytest.raises(urllib.error.HTTPError) as caught:
            post(server.url, {"prompts": [conversation[:2]], "responses": ["x"], "labels": ["y"]})
        assert "ends with the user's turn" in json.load(caught.value)["error"]
    finally:
        os.environ.pop("RLAIF_REWARD_URL", None)
        server.stop()
        rewards.close()


def test_a_checklist_judge_serves_its_scores_without_labels(tmp_path, tiny_model):
    config = judged(tmp_path, tiny_model)
    config["judge"]["judges"] = [
        {"backend": "python", "mode": "checklist", "callable": "judges_for_tests:checked_checklist"}
    ]
    rewards = Rewards(validate_pipeline(config))
    server = RewardServer(rewards, port=0).start()
    try:
        got = post(server.url, {"prompts": ["Tea?"] * 2, "responses": ["tea, please", "No?"]})
    finally:
        server.stop()
        rewards.close()
    # weights 2 (<= 20 chars), 1 (mentions tea), 1 (asks nothing back): the share met
    assert got["rewards"] == [1.0, 0.5]
