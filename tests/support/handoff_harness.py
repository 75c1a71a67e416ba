"""Runs OpenRLHF's and verl's own code on an ``rlaif export``, in a process of its own.

``python handoff_harness.py SPEC.json`` with the trainers installed ``--no-deps`` on
``PYTHONPATH``. Only the GPU stack they import and never call here (deepspeed, flash-attn, ...)
is stubbed, and only where it is not installed. For each recipe in the spec it:

1. runs the trainer's entry module as ``__main__`` with the recipe's argv, so its own parser
   (OpenRLHF's argparse, verl's Hydra config and ``validate_config``) reads and checks it, and
   stops where training would start;
2. loads the exported files with the trainer's dataset class and the policy's tokenizer, as
   configured by that parsed command line;
3. asks for rewards the trainer's way: OpenRLHF's ``SingleTurnAgentExecutor`` (its remote
   reward client) around a stand-in engine that "generates" the spec's answers, and verl's
   reward-loop worker (``RewardLoopWorker``, its ``naive`` manager) loading the reward file
   and awaiting every answer of a ``DataProto`` batch at once, as verl's trainer does.

Prints one JSON object: what each step saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

from rlaif.testing.trainers import Engine, stub_gpu_only, verl_batch


class _Started(BaseException):
    """Raised where the trainer would start training, with the parsed, validated arguments (a
    BaseException, so Hydra's error reporting lets it through)."""


def _run_main(module: str, argv: list[str]):
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except _Started as started:
        return started.args[0]
    except SystemExit as exc:
        raise SystemExit(f"{module} rejected the recipe (exit {exc.code})") from exc
    raise SystemExit(f"{module} returned without starting to train")


def _flat(ns, prefix="") -> dict:
    out = {}
    for key, value in vars(ns).items():
        if isinstance(value, SimpleNamespace):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def openrlhf(spec: dict, tokenizer) -> dict:
    import openrlhf.utils as utils
    import ray
    from openrlhf.datasets import PromptDataset, RewardDataset
    from openrlhf.datasets.utils import blending_datasets

    def stop_with_args(args):
        raise _Started(args)

    def stop_in_caller():  # train_ppo_ray's train(args) begins with ray.is_initialized()
        raise _Started(sys._getframe(1).f_locals["args"])

    utils.get_strategy = stop_with_args
    ray.is_initialized = stop_in_caller
    report = {}
    for recipe in spec["recipes"]:
        args = _run_main(recipe["module"], recipe["argv"])
        strategy = SimpleNamespace(args=args, print=lambda *a: None, is_rank_0=lambda: True)
        seen: dict = {"args": {k: v for k, v in _flat(args).items() if v not in (None, False)}}
        if recipe["module"].endswith("train_ppo_ray"):
            data = blending_datasets(
                args.data.prompt_dataset, None, strategy, dataset_split="train"
            )
            prompts = PromptDataset(data, tokenizer, strategy, args.data.input_template)
            seen["rows"] = len(prompts)
            _, prompt, label, _ = prompts[0]
            seen["prompt"], seen["label"] = prompt, label
            seen["rewards"] = _openrlhf_rewards(
                args.reward.remote_url, prompt, label, args.data.max_len, tokenizer, spec
            )
            for name in spec.get("reward_files", []):  # the same, through its reward-file loader
                seen[f"rewards:{Path(name).name}"] = _openrlhf_rewards(
                    name, prompt, label, args.data.max_len, tokenizer, spec
                )
        else:
            data = blending_datasets(
                args.data.dataset, args.data.dataset_probs, strategy, args.train.seed,
                dataset_split=args.data.dataset_split,
            )  # fmt: skip
            pairs = RewardDataset(
                data, tokenizer, args.data.max_len, strategy, is_dpo="train_dpo" in recipe["module"]
            )
            seen["rows"] = len(pairs)
            seen["prompt"], seen["chosen"] = pairs.prompts[0], pairs.chosens[0]
        report[recipe["name"]] = seen
    return report


def _openrlhf_rewards(remote_url, prompt, label, max_len, tokenizer, spec) -> dict:
    """Each answer's reward (finished with its end-of-turn marker, and cut short) from
    OpenRLHF's ``SingleTurnAgentExecutor``, its remote reward client or reward-file loader."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_url)
    params = SimpleNamespace(max_tokens=64, logprobs=None)
    got = {}
    for answer in spec["answers"]:
        for finished in (True, False):
            ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            ids = ids + [tokenizer.convert_tokens_to_ids(spec["end_of_turn"])] * finished
            out = asyncio.run(
                executor.execute(prompt, label, params, max_len, tokenizer, Engine(ids, finished))
            )
            got[f"{answer}|{'finished' if finished else 'cut'}"] = out["reward"]
    return got


def _verl_managers(config, path: str, tokenizer, data, answers: list[str]) -> dict:
    """The answers' rewards through a reward file as each of verl's managers calls it: the
    reward loop (its async ``compute_score``), the ``batch`` manager (``compute_score_batch``)
    and the older per-item manager (``compute_score_sync``)."""
    from omegaconf import OmegaConf
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.utils.import_utils import load_extern_object
    from verl.workers.reward_manager.batch import BatchRewardManager
    from verl.workers.reward_manager.naive import NaiveRewardManager

    config = OmegaConf.merge(config, {"reward": {"custom_reward_function": {"path": path}}})
    worker = RewardLoopWorker(config)
    outs = worker.loop.run_until_complete(worker.compute_score_batch(data))
    got = {"loop": [o["reward_score"] for o in outs]}
    batch = BatchRewardManager(tokenizer, 0, load_extern_object(path, "compute_score_batch"))
    per_item = NaiveRewardManager(tokenizer, 0, load_extern_object(path, "compute_score_sync"))
    for name, manager in (("batch", batch), ("per_item", per_item)):
        got[name] = [float(row.sum()) for row in manager(data)]
    return {name: dict(zip(answers, values, strict=True)) for name, values in got.items()}


def verl(spec: dict, tokenizer) -> dict:
    import verl.utils.config as verl_config
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.dataset.rl_dataset import RLHFDataset

    validate = verl_config.validate_config

    def validate_then_stop(config, **kw):
        validate(config=config, **kw)
        raise _Started(config)

    verl_config.validate_config = validate_then_stop
    report = {}
    for recipe in spec["recipes"]:
        for assignment in recipe["env"]:
            key, _, value = assignment.partition("=")
            os.environ[key] = value
        config = _run_main(recipe["module"], recipe["argv"])
        seen: dict = {
            "reward": OmegaConf.to_container(config.reward, resolve=True),
            "data": OmegaConf.to_container(config.data, resolve=True),
        }
        rows = RLHFDataset(config.data.train_files, tokenizer, config.data)
        seen["rows"] = len(rows)
        first = rows.dataframe[0]
        seen["prompt"] = tokenizer.apply_chat_template(
            first["prompt"], tokenize=False, add_generation_prompt=True
        )
        if get_custom_reward_fn(config) is not None:
            from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

            # verl's reward-loop worker, as its trainer builds it from the config: it loads
            # the reward file and awaits every answer of the batch at once
            answers = spec["answers"]
            data = verl_batch(tokenizer, [first] * len(answers), answers, spec["end_of_turn"])
            worker = RewardLoopWorker(config)
            outs = worker.loop.run_until_complete(worker.compute_score_batch(data))
            seen["rewards"] = {a: o["reward_score"] for a, o in zip(answers, outs, strict=True)}
            for path in spec.get("reward_files", []):
                seen[f"managers:{Path(path).name}"] = _verl_managers(
                    config, path, tokenizer, data, answers
                )
        report[recipe["name"]] = seen
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    spec = json.loads(Path(parser.parse_args().spec).read_text())
    stub_gpu_only()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["tokenizer"])
    report = {"openrlhf": openrlhf, "verl": verl}[spec["trainer"]](spec, tokenizer)
    print("HARNESS " + json.dumps(report, default=str))


if __name__ == "__main__":
    main()
