"""Rewards per second through each trainer's adapter, called the way its trainer calls it,
against the in-process judging service on the same kind of rollouts, in one run.

512 rollouts (128 prompts x 4 answers), an OpenAI-style judge on the loopback server (100 ms
an answer, ``max_concurrency: 64``) comparing each answer with its prompt's label in both
orders; every side scores rollouts of its own, so nothing comes from the store. The trainers'
own code does the calling (OpenRLHF 0.11 and verl 0.9, installed ``--no-deps`` beside the
project, GPU-only imports stubbed):

- ``in_process``: ``RewardService.score_now`` over all 512 at once: what each side is
  measured against (``ratio``).
- ``trl``: ``trl.GRPOTrainer._calculate_rewards`` (TRL 1.16's own reward step) with
  ``TrlReward``.
- ``verl_loop_*``: verl's reward-loop ``naive`` manager, every answer's ``run_single``
  awaited at once as its ``RewardLoopWorker`` does, with the async ``compute_score`` in
  process (``rlaif.rewards.verl``) or over HTTP (``rlaif_http_reward.py`` to ``rlaif
  serve-reward``).
- ``verl_batch_*``: verl's ``batch`` manager (one call a batch).
- ``verl_classic_http``: verl's older per-item manager, which calls a plain function one
  answer at a time (``compute_score_sync``).
- ``openrlhf_http``: OpenRLHF's ``SingleTurnAgentExecutor`` with ``--reward.remote_url`` a
  URL (its own client, a request per rollout); ``openrlhf_file_*``: the same with a reward
  file (``rlaif_reward.py`` in process, ``rlaif_http_reward.py`` over HTTP), which OpenRLHF
  calls in its event loop's default thread pool, here of ``--caller-threads`` (32: what
  asyncio gives a GPU node of 28 cores or more).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from bench_common import emit, quiet, start_loopback

REPO = Path(__file__).resolve().parents[1]
LABEL = "a colour such as blue"
SIDES = (
    "in_process", "trl", "verl_loop_inprocess", "verl_loop_http", "verl_batch_inprocess",
    "verl_batch_http", "verl_classic_http", "openrlhf_http", "openrlhf_file_inprocess",
    "openrlhf_file_http",
)  # fmt: skip


def rollouts(side: str, prompts: int, answers: int) -> list[tuple[str, str]]:
    """(question, answer) pairs of a side's own, so no side reads another's judgments."""
    return [
        (f"[{side}] Question {i}: name a colour.", f" colour number {j} of {i}")
        for i in range(prompts)
        for j in range(answers)
    ]


# -- the worker: runs with the trainers' code importable ------------------------------------


def _rate(n: int, start: float) -> float:
    return round(n / (time.perf_counter() - start), 1)


def measure(side: str, spec: dict) -> float:
    from transformers import AutoTokenizer

    from rlaif.rewards import Item, RewardService, TrlReward
    from rlaif.testing.trainers import Engine, verl_batch

    pairs = rollouts(side, spec["prompts"], spec["answers"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    if side == "in_process":
        with RewardService.from_yaml(spec["pipeline"]) as service:
            start = time.perf_counter()
            service.score_now([Item(q, a, LABEL) for q, a in pairs])
            return _rate(len(pairs), start)
    if side == "trl":
        return _trl(pairs, spec, TrlReward)
    rows = [
        {
            "data_source": "bench",
            "prompt": [{"role": "user", "content": q}],
            "reward_model": {"ground_truth": LABEL},
            "extra_info": {"question": q},
        }
        for q, _ in pairs
    ]
    if side.startswith("verl"):
        data = verl_batch(tokenizer, rows, [a for _, a in pairs], "<|im_end|>")
        return _verl(side, data, tokenizer, len(pairs))
    loader = {
        "openrlhf_http": spec["reward_url"] + "/get_reward",
        "openrlhf_file_inprocess": str(spec["files"] / "rlaif_reward.py"),
        "openrlhf_file_http": str(spec["files"] / "rlaif_http_reward.py"),
    }[side]
    return _openrlhf(loader, pairs, tokenizer, spec["caller_threads"], Engine)


def _trl(pairs, spec, trl_reward) -> float:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    reward = trl_reward.from_yaml(spec["pipeline"], reference_column="answer")
    rows = [{"prompt": q, "answer": LABEL} for q, _ in pairs[:8]]
    args = GRPOConfig(
        output_dir=str(spec["files"] / "trl"), per_device_train_batch_size=4, num_generations=4,
        report_to=[], use_cpu=True, max_completion_length=8,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=spec["model"], reward_funcs=[reward], args=args, train_dataset=Dataset.from_list(rows)
    )
    inputs = [{"prompt": q, "answer": LABEL} for q, _ in pairs]
    start = time.perf_counter()
    trainer._calculate_rewards(
        inputs, [q for q, _ in pairs], [a for _, a in pairs], [[]] * len(pairs)
    )
    rate = _rate(len(pairs), start)
    reward.close()
    return rate


def _verl(side: str, data, tokenizer, n: int) -> float:
    import rlaif_http_reward as http
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.workers.reward_manager.batch import BatchRewardManager
    from verl.workers.reward_manager.naive import NaiveRewardManager as ClassicManager

    from rlaif.rewards import verl as local

    module = local if side.endswith("inprocess") else http
    start = time.perf_counter()
    if side.startswith("verl_loop"):
        manager = NaiveRewardManager(None, tokenizer, module.compute_score)

        async def every_answer_at_once():  # as RewardLoopWorker.compute_score_batch does
            return await asyncio.gather(*(manager.run_single(data[i : i + 1]) for i in range(n)))

        manager.loop.run_until_complete(every_answer_at_once())
    elif side.startswith("verl_batch"):
        BatchRewardManager(tokenizer, 0, module.compute_score_batch)(data)
    else:
        ClassicManager(tokenizer, 0, module.compute_score_sync)(data)
    return _rate(n, start)


def _openrlhf(loader: str, pairs, tokenizer, threads: int, engine) -> float:
    from types import SimpleNamespace

    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(loader)
    params = SimpleNamespace(max_tokens=32, logprobs=None)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    async def rollout(question: str, answer: str):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [end]
        return await executor.execute(prompt, LABEL, params, 2048, tokenizer, engine(ids, True))

    async def every_rollout():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads))
        return await asyncio.gather(*(rollout(q, a) for q, a in pairs))

    start = time.perf_counter()
    outs = asyncio.run(every_rollout())
    rate = _rate(len(pairs), start)
    if any(o["reward"] is None for o in outs):
        raise RuntimeError(f"{loader}: a rollout got no reward")
    return rate


def worker(spec_path: str) -> None:
    from rlaif.testing.trainers import stub_gpu_only

    quiet()
    stub_gpu_only()
    spec = json.loads(Path(spec_path).read_text())
    spec["files"] = Path(spec["files"])
    sys.path.insert(0, str(spec["files"]))  # rlaif_http_reward as verl loads it
    figures = {}
    for side in spec["sides"]:
        figures[side] = measure(side, spec)
        print(f"  {side}: {figures[side]} rewards/s", flush=True)
    print("FIGURES " + json.dumps(figures), flush=True)


# -- the driver -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--answers", type=int, default=4, help="answers per prompt")
    parser.add_argument("--caller-threads", type=int, default=32)
    parser.add_argument("--sides", default=",".join(SIDES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    quiet()
    from rlaif.integrations import http_reward
    from rlaif.models.loading import resolve_model
    from rlaif.ops.export import IN_PROCESS
    from rlaif.testing.tiny_model import write_tiny_model
    from rlaif.testing.trainers import trainers_site

    site = trainers_site(REPO / ".cache")
    loopback, base_url = start_loopback(None)
    serving = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            model = write_tiny_model(folder / "tiny", resolve_model("smollm2-135m-instruct"))
            pipeline = folder / "bench.yaml"
            judge = {"name": "api", "backend": "openai", "model": "judge-model",
                     "base_url": base_url, "api_key_env": None, "max_concurrency": 64}  # fmt: skip
            pipeline.write_text(yaml.safe_dump({
                "name": "bench", "model": str(model), "output_dir": str(folder / "out"),
                "judge": {"judges": [judge], "cache": str(folder / "judgments.sqlite")},
            }))  # fmt: skip
            (folder / "rlaif_http_reward.py").write_text(Path(http_reward.__file__).read_text())
            (folder / "rlaif_reward.py").write_text(IN_PROCESS)
            port = 18000 + os.getpid() % 1000
            said = folder / "serve-reward.log"  # a file: a pipe nobody reads would stall it
            with said.open("w") as log:
                serving = subprocess.Popen(
                    [sys.executable, "-m", "rlaif.cli", "serve-reward", "--pipeline",
                     str(pipeline), "--port", str(port)],
                    stderr=log,
                )  # fmt: skip
            while "serving rewards" not in said.read_text():
                if serving.poll() is not None:
                    raise SystemExit("serve-reward did not start:\n" + said.read_text())
                time.sleep(0.2)
            spec = {
                "pipeline": str(pipeline), "model": str(model), "files": str(folder),
                "reward_url": f"http://127.0.0.1:{port}", "prompts": args.prompts,
                "answers": args.answers, "caller_threads": args.caller_threads,
                "sides": args.sides.split(","),
            }  # fmt: skip
            (folder / "spec.json").write_text(json.dumps(spec))
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(site), str(REPO / "benchmarks")]),
                "RLAIF_PIPELINE": str(pipeline),
                "RLAIF_REWARD_URL": spec["reward_url"],
            }
            done = subprocess.run(
                [sys.executable, __file__, "--worker", str(folder / "spec.json")],
                env=env, capture_output=True, text=True, timeout=3600,
            )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(done.stdout[-2000:] + done.stderr[-4000:])
            line = next(x for x in done.stdout.splitlines() if x.startswith("FIGURES "))
            rates = json.loads(line.removeprefix("FIGURES "))
    finally:
        for process in (serving, loopback):
            if process is not None:
                process.terminate()
    base = rates.get("in_process")
    figures = {"benchmark": "trainer_rewards", "rollouts": args.prompts * args.answers}
    for side, rate in rates.items():
        figures[f"{side}_per_s"] = rate
        if base and side != "in_process":
            figures[f"{side}_ratio"] = round(rate / base, 3)
    for key, value in figures.items():
        print(f"  {key}: {value}")
    emit(figures)


if __name__ == "__main__":
    main()
