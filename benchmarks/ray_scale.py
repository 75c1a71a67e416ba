"""``executor: ray`` against ``executor: local`` on one machine: sampling with 1 and 2 Ray
workers, and API judging through 1 and 2 workers, side by side in one run.

Sampling: the embedded model, ``--prompts`` x ``--n`` x ``--max-new-tokens`` in chunks of
``--chunk-size``; here (torch on every core) and on a local Ray (``num_cpus`` = cores) with 1
and 2 actors of ``--cpus-per-worker`` CPUs each (torch uses that many threads in an actor).
Each side also runs a small job (one chunk, one batch, per worker): what a run pays to start
its actors and load the model in them. ``wall`` figures include it; ``steady`` figures are
the rate past it, (full - small work) / (full - small time), what a long night runs at and
what projections to more workers start from.
Judging: ``--pairs`` pairs in both orders against the loopback server (100 ms an answer),
the judge's ``max_concurrency`` split between the actors as the executor does.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench_common import emit, median, quiet, start_loopback
from datasets import Dataset

from rlaif.config import JudgeConfig, OpenAIJudgeConfig, PromptsConfig, SampleConfig
from rlaif.executors.cluster import start_ray
from rlaif.executors.config import RayConfig
from rlaif.judging.store import JudgmentStore
from rlaif.models.loading import DEFAULT_MODEL
from rlaif.prompts import load_prompts
from rlaif.stages import sample
from rlaif.stages.judge import judge

SMALL = {"local": 1, "ray_1": 1, "ray_2": 2}
"""The small job's size, in chunks or batches: one for each worker."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", nargs="+", choices=["sampling", "judging"], default=["sampling", "judging"]
    )
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="judge requests per actor call")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    quiet()
    cores = os.cpu_count() or 1
    base = RayConfig(
        num_cpus=cores, cpus_per_worker=args.cpus_per_worker, batch_size=args.batch_size
    )
    start_ray(base)
    sides = {
        "local": None,
        **{
            f"ray_{k}": base.model_copy(update={"sample_workers": k, "judge_workers": k})
            for k in (1, 2)
        },
    }
    figures: dict = {"benchmark": "ray_scale", "cores": cores}
    if "sampling" in args.parts:
        figures["sampling_tokens_per_s"] = sampling(args, sides)
    if "judging" in args.parts:
        figures["judging_requests_per_s"] = judging(args, sides)
    for key, got in figures.items():
        if isinstance(got, dict):
            sides_text = "; ".join(
                f"{name} {got[name]['wall']:.1f} / {got[name]['steady']:.1f}" for name in sides
            )
            scale = got["ray_2"]["steady"] / got["ray_1"]["steady"]
            print(
                f"{key} (wall / steady): {sides_text}; Ray 2 workers / 1, steady: {scale:.2f}x, "
                f"small job {got['ray_1']['startup_s']:.1f} s (1 worker)"
            )
    if "judging" in args.parts:  # the figures: one worker's steady rate against here
        local, ray = (figures["judging_requests_per_s"][k]["steady"] for k in ("local", "ray_1"))
        figures |= {"local_per_s": local, "ray_per_s": ray, "ratio": round(ray / local, 3)}
    emit(figures)


def sampling(args: argparse.Namespace, sides: dict) -> dict:
    cfg = SampleConfig(
        backend="transformers",
        n=args.n,
        max_new_tokens=args.max_new_tokens,
        chunk_size=args.chunk_size,
        dtype="float32",
    )
    prompts = load_prompts(PromptsConfig()).select(range(args.prompts))

    def sampled(ray: RayConfig | None, size: int):
        def run() -> tuple[float, float]:
            start = time.perf_counter()
            out = sample(prompts.select(range(size)), cfg, model=DEFAULT_MODEL, ray=ray)
            return sum(map(sum, out["n_tokens"])), time.perf_counter() - start

        return run

    return rates(
        {name: sampled(ray, args.chunk_size * SMALL[name]) for name, ray in sides.items()},
        {name: sampled(ray, args.prompts) for name, ray in sides.items()},
        args.repeats,
    )


def judging(args: argparse.Namespace, sides: dict) -> dict:
    server, url = start_loopback(None)
    pairs = Dataset.from_list(
        [
            {"pair_id": f"p{i}", "prompt_id": f"q{i}", "prompt": f"Question {i}?",
             "index_a": 0, "index_b": 1, "response_a": "Yes.", "response_b": "No, never."}
            for i in range(args.pairs)
        ]
    )  # fmt: skip
    spec = OpenAIJudgeConfig(model="judge", base_url=url, api_key_env=None, max_concurrency=16)
    stores = tempfile.TemporaryDirectory()
    fresh = iter(range(10_000))

    def judged(ray: RayConfig | None, size: int):
        def run() -> tuple[float, float]:
            start = time.perf_counter()
            with JudgmentStore(Path(stores.name) / f"{next(fresh)}.sqlite") as store:  # no cache
                out = judge(
                    pairs.select(range(size)), JudgeConfig(judges=[spec]), store=store, ray=ray
                )
            return len(out), time.perf_counter() - start

        return run

    try:
        return rates(
            {name: judged(ray, args.batch_size // 2 * SMALL[name]) for name, ray in sides.items()},
            {name: judged(ray, args.pairs) for name, ray in sides.items()},
            args.repeats,
        )
    finally:
        server.terminate()
        stores.cleanup()


def rates(small: dict, full: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Per side: the wall rate of the full job, the steady rate past the small one's cost,
    and that cost (medians over ``repeats``, sides interleaved)."""
    sides = {f"{name} small": fn for name, fn in small.items()} | {
        f"{name} full": fn for name, fn in full.items()
    }
    got: dict[str, list] = {name: [] for name in sides}
    for r in range(repeats):
        for name in sides if r % 2 == 0 else reversed(list(sides)):
            got[name].append(sides[name]())
            print(f"  repeat {r + 1}/{repeats} {name}: {got[name][-1]}", flush=True)
    out = {}
    for name in full:
        (w_small, t_small), (w_full, t_full) = (
            (median([x[0] for x in got[k]]), median([x[1] for x in got[k]]))
            for k in (f"{name} small", f"{name} full")
        )
        out[name] = {
            "wall": round(w_full / t_full, 2),
            "steady": round((w_full - w_small) / max(t_full - t_small, 1e-9), 2),
            "startup_s": round(t_small, 2),
        }
    return out


if __name__ == "__main__":
    main()
