"""``rlaif serve-reward`` throughput: rewards per second through the HTTP server with 1 and 32
concurrent clients, next to calling the judges as a reward directly (``JudgeReward``, what
GRPO does in process), in one run.

Two judges: an API judge on the loopback server (100 ms an answer, in its own process) and a
python judge (microseconds: what the server itself costs). Every side judges answers of its
own, so nothing comes from the store. Then the load: ``--load-clients`` clients (64) each
sending ``--load-requests`` (1,000) one-answer requests in turn to the python judge's server,
with the latency's p50 and p99. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_common import emit, quiet, start_loopback

from rlaif.config import validate_pipeline
from rlaif.judges import Budget
from rlaif.judging.reward import JudgeReward
from rlaif.judging.store import JudgmentStore
from rlaif.ops.reward_server import Rewards, RewardServer
from rlaif.testing.tiny_model import write_tiny_model

PROMPT = "Question {salt}: name a colour."
LABEL = "a colour such as blue"


def config(folder: Path, model: Path, judge: dict) -> dict:
    return {
        "name": "bench",
        "model": str(model),
        "output_dir": str(folder),
        "judge": {"judges": [judge], "cache": str(folder / "judgments.sqlite")},
    }


def items(salt: str, n: int) -> list[tuple[str, str]]:
    return [(PROMPT.format(salt=f"{salt}{i}"), f" colour number {i}") for i in range(n)]


def direct(cfg, salt: str, n: int) -> float:
    with JudgmentStore(cfg.judgment_store_path()) as store:
        reward = JudgeReward(cfg.judge, store, Budget())
        asked = items(salt, n)
        start = time.perf_counter()
        reward(
            prompts=[p for p, _ in asked],
            completions=[r for _, r in asked],
            prompt_text=[p for p, _ in asked],
            baselines=[[LABEL]] * n,
        )
        return n / (time.perf_counter() - start)


def served(url: str, salt: str, n: int, clients: int) -> float:
    def one(item: tuple[str, str]) -> None:
        body = {"prompts": [item[0]], "responses": [item[1]], "labels": [LABEL]}
        request = urllib.request.Request(
            f"{url}/get_reward", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            json.load(response)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, items(salt, n)))
    return n / (time.perf_counter() - start)


def load(cfg, clients: int, per_client: int) -> dict:
    """Many clients at once, each waiting for its answer before the next request."""
    rewards = Rewards(cfg)
    server = RewardServer(rewards, port=0).start()
    waits: list[float] = []

    def client(n: int) -> None:
        for i in range(per_client):
            start = time.perf_counter()
            served(server.url, f"load-{n}-{i}", 1, 1)
            waits.append(time.perf_counter() - start)

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        elapsed = time.perf_counter() - start
    finally:
        server.stop()
        rewards.close()
    waits.sort()
    return {
        "load_requests": len(waits),
        "load_clients": clients,
        "load_per_s": round(len(waits) / elapsed, 1),
        "load_p50_s": round(waits[len(waits) // 2], 4),
        "load_p99_s": round(waits[int(0.99 * len(waits)) - 1], 4),
    }


def measure(cfg, n: int, label: str) -> dict:
    out = {f"{label}_direct_per_s": round(direct(cfg, f"{label}-d", n), 1)}
    rewards = Rewards(cfg)
    server = RewardServer(rewards, port=0).start()
    try:
        for clients in (1, 32):
            rate = served(server.url, f"{label}-{clients}", n, clients)
            out[f"{label}_served_{clients}_per_s"] = round(rate, 1)
            out[f"{label}_ratio_{clients}"] = round(rate / out[f"{label}_direct_per_s"], 3)
    finally:
        server.stop()
        rewards.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64, help="rewards per side")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: embedded)")
    parser.add_argument("--load-clients", type=int, default=64)
    parser.add_argument("--load-requests", type=int, default=1000, help="per client")
    args = parser.parse_args()
    quiet()
    process, base_url = start_loopback(None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            from rlaif.models.loading import resolve_model

            model = write_tiny_model(
                folder / "tiny", args.tokenizer or resolve_model("smollm2-135m-instruct")
            )
            api = {
                "name": "api",
                "backend": "openai",
                "model": "judge-model",
                "base_url": base_url,
                "api_key_env": None,
                "max_concurrency": 32,
            }
            rule = {
                "name": "rule",
                "backend": "python",
                "callable": "rlaif.judges.rules:prefer_shorter",
            }
            figures = {"benchmark": "reward_server", "n": args.n}
            figures |= measure(validate_pipeline(config(folder / "api", model, api)), args.n, "api")
            rule_cfg = validate_pipeline(config(folder / "rule", model, rule))
            figures |= measure(rule_cfg, args.n, "python")
            figures |= load(rule_cfg, args.load_clients, args.load_requests)
    finally:
        if process is not None:
            process.terminate()
    for key, value in figures.items():
        print(f"  {key}: {value}")
    emit(figures)


if __name__ == "__main__":
    main()
