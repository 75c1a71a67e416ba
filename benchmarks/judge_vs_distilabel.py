"""The judge stage next to distilabel 1.5.3 judging the same pairs on the same server.

Both sides send every pair in both orders to one OpenAI-compatible server (the loopback
server in its own process, 100 ms per answer, unless ``--base-url``), asking for the first
token's top log-probabilities with the same rubric text, the same number of requests in
flight, and no cache. The rlaif side is the whole judge stage (rendering, hashing, rate
limiting, retries, verdict reading, durable SQLite writes); distilabel's side is a
``TextGeneration`` task over ``OpenAILLM``. distilabel pins versions that clash with rlaif's,
so it runs in its own virtual environment (``make bench`` creates ``.venv-distilabel``).
Each side runs in a process of its own and is timed twice: the whole process, from its start
to its exit (the interpreter, the imports, the judging, the writes: what a nightly job
waits for), and inside it, the judging alone. Figures are judgments/s, medians of
interleaved repeats; the headline ratio is the whole-process one. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import emit, interleaved, median, quiet, start_loopback
from judge_throughput import make_pairs

from rlaif.config import JudgeConfig, OpenAIJudgeConfig
from rlaif.judging.store import JudgmentStore
from rlaif.rubrics import load_rubric
from rlaif.stages import judge

HERE = Path(__file__).resolve().parent
DEFAULT_PYTHON = HERE.parent / ".venv-distilabel" / "bin" / "python"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="OpenAI-compatible /v1 URL; default: start loopback")
    parser.add_argument("--model", default="judge-model")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--distilabel-python", type=Path, default=DEFAULT_PYTHON)
    parser.add_argument("--side", choices=["rlaif"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    quiet()
    if args.side:
        print(json.dumps(rlaif_side(args)))
        return
    if not args.distilabel_python.exists():
        sys.exit(
            f"{args.distilabel_python} not found: `make bench` creates it (a venv with "
            "distilabel==1.5.3, openai, requests and beautifulsoup4)"
        )
    server, base_url = start_loopback(args.base_url)
    try:
        spec = OpenAIJudgeConfig(
            name="bench",
            model=args.model,
            base_url=base_url,
            api_key_env=None,
            max_concurrency=args.concurrency,
        )
        pairs = make_pairs(args.pairs, "d")
        judgments = 2 * args.pairs
        rubric = load_rubric(spec.rubric)
        rows = [
            {"prompt": r["prompt"], "response_a": a, "response_b": b}
            for r in pairs
            for a, b in ((r["response_a"], r["response_b"]), (r["response_b"], r["response_a"]))
        ]
        job = {
            "rows": rows,
            "template": rubric.body,
            "system": rubric.system,
            "base_url": base_url,
            "model": args.model,
            "batch_size": args.concurrency,
            "top_logprobs": spec.top_logprobs,
        }

        inside: dict[str, list[float]] = {"rlaif": [], "distilabel": []}

        def process(name: str, command: list[str], stdin: str | None):
            def run() -> float:
                start = time.perf_counter()
                done = subprocess.run(
                    command, input=stdin, capture_output=True, text=True, check=True
                )
                whole = time.perf_counter() - start
                result = json.loads(done.stdout.strip().splitlines()[-1])
                assert result["answered"] == judgments, f"{name} answered {result['answered']}"
                inside[name].append(judgments / result["seconds"])
                return judgments / whole

            return run

        rlaif_cmd = [sys.executable, __file__, "--side", "rlaif", "--base-url", base_url,
                     "--model", args.model, "--pairs", str(args.pairs),
                     "--concurrency", str(args.concurrency)]  # fmt: skip
        distilabel_cmd = [str(args.distilabel_python), str(HERE / "distilabel_judge_side.py")]
        figures = interleaved(
            {
                "rlaif": process("rlaif", rlaif_cmd, None),
                "distilabel": process("distilabel", distilabel_cmd, json.dumps(job)),
            },
            args.repeats,
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    rlaif_rate, other_rate = median(figures["rlaif"]), median(figures["distilabel"])
    rlaif_in, other_in = median(inside["rlaif"]), median(inside["distilabel"])
    print(
        f"whole process: rlaif judge stage {rlaif_rate:.1f} judgments/s, distilabel "
        f"{other_rate:.1f}/s (ratio {rlaif_rate / other_rate:.2f}, goal >= 3); judging alone: "
        f"{rlaif_in:.1f}/s and {other_in:.1f}/s (ratio {rlaif_in / other_in:.2f}); "
        f"{judgments} judgments, {args.concurrency} in flight, medians of {args.repeats}"
    )
    emit(
        {
            "benchmark": "judge_vs_distilabel",
            "unit": "judgments/s",
            "rlaif_per_s": round(rlaif_rate, 1),
            "raw_per_s": round(other_rate, 1),
            "raw": "distilabel 1.5.3",
            "ratio": round(rlaif_rate / other_rate, 3),
            "goal": ">= 3",
            "in_process_ratio": round(rlaif_in / other_in, 3),
            "judgments": judgments,
            "concurrency": args.concurrency,
            "repeats": args.repeats,
        }
    )


def rlaif_side(args: argparse.Namespace) -> dict:
    """The rlaif side, in its own process: the judge stage on the benchmark's pairs."""
    spec = OpenAIJudgeConfig(
        name="bench",
        model=args.model,
        base_url=args.base_url,
        api_key_env=None,
        max_concurrency=args.concurrency,
    )
    pairs = make_pairs(args.pairs, "d")
    with tempfile.TemporaryDirectory() as tmp, JudgmentStore(Path(tmp) / "j.db") as store:
        start = time.perf_counter()
        out = judge(pairs, JudgeConfig(judges=[spec]), store=store)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "answered": sum(s == "ok" for s in out["status"])}


if __name__ == "__main__":
    main()
