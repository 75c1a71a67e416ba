"""``rlaif serve-reward`` and ``rlaif review`` under clients that misbehave, on 127.0.0.1: a
poisoned item beside good ones, one huge request beside small ones, deep nesting, 1,100
half-open connections, a body trickled a byte a second, a cross-site form post, a 1 GiB body,
and judges that fail, are down or hang. The attackers connect from 127.0.0.2 (the loopback
range), the clients that must still be served from 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from cli_runner import SUPPORT

from rlaif.config import validate_pipeline
from rlaif.ops.reward_server import Rewards, RewardServer
from rlaif.ops.serving import Limits
from rlaif.testing.loopback import LoopbackJudgeServer

PROMPT = "Question: name a colour.\nAnswer:"
LABEL = "a colour such as blue"
FAST = Limits(header_timeout_s=1.0, body_timeout_s=1.5, max_per_client=64, sweep_s=0.1)


def config(tmp_path, model, judge: dict | None = None, **judging) -> dict:
    judge = judge or {"backend": "python", "callable": "judges_for_tests:prefer_shorter"}
    return {
        "name": "hostile",
        "model": str(model),
        "output_dir": str(tmp_path / "out"),
        "judge": {"judges": [judge], "cache": str(tmp_path / "judgments.sqlite"), **judging},
    }


def post(url, body, headers=None, path="/get_reward", timeout=60):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}{path}", data, {"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def body(*responses, prompt=PROMPT):
    return {
        "prompts": [prompt] * len(responses),
        "responses": list(responses),
        "labels": [LABEL] * len(responses),
    }


@pytest.fixture
def server(tmp_path, tiny_model):
    started = []

    def start(judge=None, limits=FAST, **options):
        rewards = Rewards(validate_pipeline(config(tmp_path, tiny_model, judge)))
        served = RewardServer(rewards, port=0, limits=limits, **options).start()
        started.append((served, rewards))
        return served

    yield start
    for served, rewards in started:
        served.stop()
        rewards.close()


def attacker(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed (or refused) the connection: a read ends, with or without a 503."""
    try:
        while data := sock.recv(65536):
            if b" 503 " in data:
                return True
        return True
    except (ConnectionResetError, TimeoutError):
        return False


def test_a_poisoned_item_fails_its_own_request_only(server):
    served = server()
    poisoned = json.dumps(body("p\ud800")).encode()  # a lone surrogate: valid JSON, no text
    assert b"\\ud800" in poisoned
    results: dict = {}

    def send(name, payload):
        results[name] = post(served.url, payload)

    threads = [threading.Thread(target=send, args=(i, body(f" colour {i}"))) for i in range(8)]
    threads.append(threading.Thread(target=send, args=("bad", poisoned)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status, answer = results.pop("bad")
    assert status == 400
    assert "responses.0" in answer["error"] and "surrogate" in answer["error"]
    assert all(status == 200 for status, _ in results.values())
    deep = b'{"prompts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, answer = post(served.url, deep)
    assert status == 400 and "nested deeper" in answer["error"]


def test_one_huge_request_does_not_hold_the_others(server):
    served = server()
    huge = body(*(f" answer {i}" for i in range(20_000)))
    done: dict = {}
    thread = threading.Thread(target=lambda: done.update(big=post(served.url, huge, timeout=300)))
    thread.start()
    time.sleep(1.0)  # the huge request is being scored
    waits = []
    for i in range(5):
        start = time.perf_counter()
        status, answer = post(served.url, body(f" small {i}"))
        waits.append(time.perf_counter() - start)
        assert status == 200 and len(answer["rewards"]) == 1
    assert thread.is_alive(), "the huge request ended before the small ones were sent"
    thread.join()
    status, answer = done["big"]
    assert status == 200 and len(answer["rewards"]) == 20_000
    assert max(waits) < 2.0, waits  # one share of a batch, not the whole 20,000 items


def test_half_open_connections_and_trickled_bodies_are_cut_off(server):
    served = server()
    port = served.port
    half_open = []
    for _ in range(1_100):
        sock = attacker(port)
        sock.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Le")
        half_open.append(sock)
    status, answer = post(served.url, body(" blue"), timeout=10)  # from 127.0.0.1
    assert status == 200 and len(answer["rewards"]) == 1
    assert served.guard.refused >= 1_100 - FAST.max_per_client
    time.sleep(FAST.header_timeout_s + 1.0)
    assert all(closed_by_server(s) for s in half_open)
    assert served.guard.open == set() or all(c.client[0] == "127.0.0.1" for c in served.guard.open)
    for sock in half_open:
        sock.close()

    slow = attacker(port)
    head = (
        "POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    slow.sendall(head.encode())
    start = time.perf_counter()
    cut = False
    while time.perf_counter() - start < 10:
        try:
            slow.sendall(b" ")
        except OSError:
            cut = True
            break
        time.sleep(1.0 / 8)
    elapsed = time.perf_counter() - start
    slow.close()
    assert cut and elapsed < FAST.body_timeout_s + 3, elapsed
    assert post(served.url, body(" red"))[0] == 200


def test_cross_site_posts_wrong_types_and_tokens(server, monkeypatch):
    monkeypatch.setenv("RLAIF_TEST_TOKEN", "s3cret")
    open_server = server()
    form = json.dumps(body(" blue")).encode()
    # what an enctype=text/plain form on another site sends
    status, answer = post(
        open_server.url, form, {"Content-Type": "text/plain", "Origin": "https://evil.example"}
    )
    assert status == 403 and "cross-site" in answer["error"]
    status, answer = post(open_server.url, form, {"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in answer["error"]
    same_site = {"Origin": open_server.url}
    assert post(open_server.url, form, same_site)[0] == 200

    guarded = server(token_env="RLAIF_TEST_TOKEN")
    assert post(guarded.url, form)[0] == 401
    assert post(guarded.url, form, {"Authorization": "Bearer s3cre"})[0] == 401
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert post(guarded.url, form, {"Authorization": f"{scheme} s3cret"})[0] == 200


def test_listening_beyond_loopback_needs_a_token_or_insecure(tmp_path, tiny_model, caplog):
    from rlaif.errors import ConfigError

    rewards = Rewards(validate_pipeline(config(tmp_path, tiny_model)))
    try:
        with pytest.raises(ConfigError, match="--token-env"):
            RewardServer(rewards, host="0.0.0.0", port=0)
        RewardServer(rewards, host="0.0.0.0", port=0, insecure=True)  # built, not started
        assert "without a token (--insecure)" in caplog.text
        RewardServer(rewards, host="127.0.0.5", port=0)  # any loopback address is fine
    finally:
        rewards.close()


def test_judge_failures_reach_the_trainer(server, tmp_path, tiny_model):
    with LoopbackJudgeServer(hang_s=30) as judge_server:
        api = {
            "backend": "openai",
            "name": "api",
            "model": "judge-model",
            "base_url": judge_server.openai_url,
            "api_key_env": None,
            "max_retries": 1,
            "timeout_s": 1.0,
        }
        failing = server(judge=api)
        good, bad = " blue", " green [[always500]]"
        status, answer = post(failing.url, body(good, bad))
        assert status == 502
        assert answer["rewards"][0] is not None and answer["rewards"][1] is None
        assert answer["errors"][0] is None and "500" in answer["errors"][1]
        assert "1 of 2 answer(s) got no judgment" in answer["error"]

        hanging = " red [[hang:9]]"
        status, answer = post(failing.url, body(hanging))
        assert status == 502 and answer["rewards"] == [None]
        assert "error" in answer["errors"][0].lower()

        nulls = server(judge=api, on_failure="null")
        status, answer = post(nulls.url, body(good, bad))
        assert status == 200 and answer["rewards"][1] is None and "500" in answer["errors"][1]

        neutral = server(judge=api, on_failure="neutral")
        status, answer = post(neutral.url, body(good, bad))
        assert status == 200 and answer["rewards"][1] == 0.5 and answer["errors"][1]
        down = server(judge={**api, "name": "down"})  # checked while its judge is up

    status, answer = post(down.url, body(" yellow"))  # the judge server is gone now
    assert status == 502 and answer["rewards"] == [None]
    assert "cannot reach" in answer["errors"][0]


def test_a_spent_budget_is_a_503(tmp_path, tiny_model):
    with LoopbackJudgeServer() as judge_server:
        api = {
            "backend": "openai",
            "model": "judge-model",
            "base_url": judge_server.openai_url,
            "api_key_env": None,
            "price": {"input_per_mtok": 1_000_000.0, "output_per_mtok": 0.0},
        }
        rewards = Rewards(validate_pipeline(config(tmp_path, tiny_model, api, max_cost_usd=0.0)))
        served = RewardServer(rewards, port=0).start()
        try:
            status, answer = post(served.url, body(" blue"))
        finally:
            served.stop()
            rewards.close()
    assert status == 503 and "budget" in answer["errors"][0]


def test_the_review_page_reads_no_huge_or_broken_body(tmp_path, tiny_model):
    """``rlaif review`` in its own process: a 1 GiB label post without a token leaves its
    memory flat, a non-UTF-8 one is a 400, and the page still answers."""
    from configs_for_tests import pipeline, write

    from rlaif.run.runner import Pipeline

    run = tmp_path / "run"
    Pipeline.from_yaml(write(tmp_path, pipeline(tmp_path, tiny_model))).run(
        stages=["judge"], run_dir=run
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "rlaif.cli", "review", str(run), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SUPPORT), "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stderr.readline()
        assert "review" in line, line
        address = line.split(" at ")[-1].strip()
        base = address.split("/?")[0]
        port = int(base.rsplit(":", 1)[1])

        def rss_mb() -> float:
            with open(f"/proc/{process.pid}/status") as status:
                return int(status.read().split("VmRSS:")[1].split()[0]) / 1024

        before = rss_mb()
        sock = attacker(port)
        sock.sendall(
            b"POST /pair/0/label HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * (1 << 20)
        sent = 0
        try:
            while sent < (1 << 30):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except OSError:
            pass  # the server answered 413 and closed: it read no further
        sock.close()
        assert sent < (1 << 30), "the server read a whole 1 GiB body"
        assert rss_mb() - before < 50
        declared = urllib.request.Request(
            f"{base}/pair/0/label",
            b"",
            {"Content-Length": str(1 << 30), "Content-Type": "application/x-www-form-urlencoded"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(declared, timeout=10)
        assert caught.value.code == 413
        broken = urllib.request.Request(f"{base}/pair/0/label", b"label=\xff\xfe&token=x")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(broken, timeout=10)
        assert caught.value.code == 400
        with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
            assert json.load(response)["status"] == "ok"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_64_clients_keep_a_p99_under_half_a_second(server):
    from concurrent.futures import ThreadPoolExecutor

    served = server(limits=Limits())
    waits: list[float] = []

    def client(n: int) -> None:
        for i in range(20):
            start = time.perf_counter()
            status, _ = post(served.url, body(f" client {n} answer {i}"))
            waits.append(time.perf_counter() - start)
            assert status == 200

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(client, range(64)))
    waits.sort()
    p99 = waits[int(0.99 * len(waits)) - 1]
    assert len(waits) == 64 * 20
    assert p99 < 0.5, p99


def test_a_judge_that_cannot_be_reached_stops_the_server_before_it_serves(tmp_path, tiny_model):
    from rlaif.errors import ConfigError

    api = {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
           "api_key_env": None}  # fmt: skip
    with pytest.raises(ConfigError, match="nothing answers at http://127.0.0.1:9/v1"):
        Rewards(validate_pipeline(config(tmp_path, tiny_model, api)))
