"""``rlaif serve-reward``: rewards over HTTP from the judges (through the judgment store) or a
reward model, called with a real HTTP client on 127.0.0.1, OpenRLHF's body and verl's shim."""

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
import yaml
from cli_runner import SUPPORT

from rlaif.config import validate_pipeline
from rlaif.integrations import verl_reward
from rlaif.ops.reward_server import Rewards, make_server

PROMPT = "Question: name a colour.\nAnswer:"
LABEL = "a colour such as blue"


def judged(tmp_path):
    return {
        "name": "rewards",
        "output_dir": str(tmp_path / "out"),
        "judge": {
            "judges": [{"backend": "python", "callable": "judges_for_tests:prefer_shorter"}],
            "cache": str(tmp_path / "judgments.sqlite"),
        },
    }


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/get_reward", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


@pytest.fixture
def served(tmp_path):
    rewards = Rewards(validate_pipeline(judged(tmp_path)))
    server = make_server(rewards, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
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
    assert verl_reward.compute_score("rlaif/t", " blue", LABEL, info) == short
    answers = [" blue", " a long, winding answer about many colours"]
    batch = verl_reward.compute_score_batch(["rlaif/t"] * 2, answers, [LABEL] * 2, [info] * 2)
    assert batch == [short, long]


def test_bad_requests_get_a_400_that_says_why(served):
    cases = [
        ({"prompts": [PROMPT], "responses": ["x"]}, "every prompt needs one"),
        ({"prompts": [PROMPT], "query": ["a", "b"], "labels": [LABEL]}, "one text"),
        ({"responses": ["x"]}, "'prompts'"),
    ]
    for body, message in cases:
        with pytest.raises(urllib.error.HTTPError) as caught:
            post(served, body)
        assert caught.value.code == 400
        assert message in json.load(caught.value)["error"]
    with urllib.request.urlopen(f"{served}/health", timeout=10) as response:
        assert json.load(response) == {"status": "ok"}


def test_a_reward_model_scores_without_labels(tmp_path, tiny_model):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model, num_labels=1)
    folder = tmp_path / "reward_model"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    rewards = Rewards(validate_pipeline(judged(tmp_path)), reward_model=folder)
    got = rewards.score({"prompts": [PROMPT] * 2, "responses": [" blue", " red and green"]})
    assert len(got["rewards"]) == 2 and got["rewards"][0] != got["rewards"][1]
    alone = rewards.score({"prompts": [PROMPT], "responses": [" blue"]})["rewards"]
    assert alone == pytest.approx(got["rewards"][:1], abs=1e-5)  # batched or alone alike


def test_the_cli_serves_until_stopped(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(judged(tmp_path)))
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
