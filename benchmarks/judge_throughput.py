"""Judge-stage throughput next to the bare ``openai.AsyncOpenAI`` client, in one run.

Both sides send the same requests (every pair in both orders, label-probability reading)
with the same number in flight; the rlaif side is the whole judge stage: rendering,
hashing, rate limiting, retries, verdict parsing and durable SQLite writes. A third side,
bare ``aiohttp`` posting the same bodies with no SDK and nothing read from the answers,
is the most any client gets from the server at that concurrency on this machine. The sides
are interleaved over ``--repeats`` runs and their medians reported. Then a rate part sets a
requests-per-minute limit, against a server that answers 429 above that rate, and reports
the achieved rate and the 429s served.

Without ``--base-url`` it starts the loopback server (100 ms per answer) in its own process.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import openai
from bench_common import emit, interleaved, median, quiet, start_loopback
from datasets import Dataset

from rlaif.config import JudgeConfig, OpenAIJudgeConfig
from rlaif.judges import JudgeRequest, build_judge
from rlaif.judging.store import JudgmentStore
from rlaif.stages import judge
from rlaif.testing.loopback import LoopbackJudgeServer


def make_pairs(n: int, salt: str) -> Dataset:
    return Dataset.from_dict(
        {
            "pair_id": [f"{salt}{i}:0-1" for i in range(n)],
            "prompt_id": [f"{salt}{i}" for i in range(n)],
            "prompt": [f"Question {salt}{i}: how do I keep basil fresh?" for i in range(n)],
            "index_a": [0] * n,
            "index_b": [1] * n,
            "response_a": [f"Keep it in water on the counter ({i})." for i in range(n)],
            "response_b": [
                f"Wrap it in a damp towel and refrigerate it, then ... ({i})" for i in range(n)
            ],
        }
    )


async def bare_client(base_url: str, model: str, messages: list, concurrency: int) -> float:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(m: list) -> None:
        async with gate:
            await client.chat.completions.create(
                model=model,
                messages=m,
                temperature=0.0,
                max_tokens=1,
                logprobs=True,
                top_logprobs=20,
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(m) for m in messages))
    elapsed = time.perf_counter() - start
    await client.close()
    return elapsed


async def bare_aiohttp(base_url: str, model: str, messages: list, concurrency: int) -> float:
    body = {"model": model, "temperature": 0.0, "max_tokens": 1, "logprobs": True}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def one(m: list) -> None:
            payload = {**body, "messages": m, "top_logprobs": 20}
            async with http.post(f"{base_url}/chat/completions", json=payload) as response:
                await response.read()

        start = time.perf_counter()
        await asyncio.gather(*(one(m) for m in messages))
        return time.perf_counter() - start


def rlaif_stage(cfg: JudgeConfig, pairs: Dataset, store_dir: Path) -> tuple[float, Dataset]:
    with JudgmentStore(store_dir / "judgments.sqlite") as store:
        start = time.perf_counter()
        out = judge(pairs, cfg, store=store)
        return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="OpenAI-compatible /v1 URL; default: start loopback")
    parser.add_argument("--model", default="judge-model")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rpm", type=float, default=1200.0, help="limit for the rate part")
    parser.add_argument("--rpm-requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved; medians reported")
    args = parser.parse_args()
    quiet()

    server, base_url = start_loopback(args.base_url)
    try:
        spec = OpenAIJudgeConfig(
            name="bench",
            model=args.model,
            base_url=base_url,
            api_key_env=None,
            max_concurrency=args.concurrency,
        )
        backend = build_judge(spec)
        with tempfile.TemporaryDirectory() as tmp:
            pairs = make_pairs(args.pairs, "t")
            messages = [
                backend.render(JudgeRequest(r["prompt"], a, b))
                for r in pairs
                for a, b in ((r["response_a"], r["response_b"]), (r["response_b"], r["response_a"]))
            ]
            judgments = len(messages)
            failed: list[int] = []

            def bare(client: Callable[..., Awaitable[float]]) -> Callable[[], float]:
                return lambda: (
                    judgments
                    / asyncio.run(client(base_url, args.model, messages, args.concurrency))
                )

            def stage() -> float:
                store = Path(tempfile.mkdtemp(dir=tmp))  # a fresh store: nothing cached
                seconds, out = rlaif_stage(JudgeConfig(judges=[spec]), pairs, store)
                failed.append(sum(s != "ok" for s in out["status"]))
                return judgments / seconds

            rates = interleaved(
                {
                    "bare AsyncOpenAI": bare(bare_client),
                    "rlaif": stage,
                    "bare aiohttp": bare(bare_aiohttp),
                },
                args.repeats,
            )

            # The rate part runs against a server that answers 429 above the limit (unless an
            # external --base-url was given), so a 429 storm would show.
            with LoopbackJudgeServer(
                latency_s=0.1, max_per_second=math.ceil(args.rpm / 60)
            ) as strict:
                url = args.base_url or strict.openai_url
                limited = spec.model_copy(update={"requests_per_minute": args.rpm, "base_url": url})
                rpm_pairs = make_pairs(args.rpm_requests // 2, "r")
                rpm_s, rpm_out = rlaif_stage(JudgeConfig(judges=[limited]), rpm_pairs, Path(tmp))
                rpm_429s = None if args.base_url else strict.served[429]
        rlaif_rate, bare_rate = median(rates["rlaif"]), median(rates["bare AsyncOpenAI"])
        rpm_achieved = len(rpm_out) / rpm_s * 60
        figures = {
            "pairs": args.pairs,
            "judgments": judgments,
            "concurrency": args.concurrency,
            "benchmark": "judge_throughput (vs bare AsyncOpenAI)",
            "unit": "judgments/s",
            "rlaif_per_s": round(rlaif_rate, 1),
            "raw_per_s": round(bare_rate, 1),
            "ratio": round(rlaif_rate / bare_rate, 3),
            "goal": ">= 0.95",
            "bare_aiohttp_per_s": round(median(rates["bare aiohttp"]), 1),
            "failed": max(failed),
            "repeats": args.repeats,
            "rpm_limit": args.rpm,
            "rpm_achieved": round(rpm_achieved, 1),
            "rpm_ratio": round(rpm_achieved / args.rpm, 3),
            "rpm_failed": sum(s != "ok" for s in rpm_out["status"]),
            "rpm_429s": rpm_429s,
        }
        print(
            f"bare client: {figures['raw_per_s']}/s, rlaif judge stage: "
            f"{figures['rlaif_per_s']}/s (ratio {figures['ratio']}), bare aiohttp "
            f"{figures['bare_aiohttp_per_s']}/s (the server's most at this concurrency); with "
            f"requests_per_minute={args.rpm}: {figures['rpm_achieved']}/min"
        )
        emit(figures)
    finally:
        if server is not None:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
