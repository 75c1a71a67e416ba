"""Command lines that train on an ``rlaif export`` with OpenRLHF or verl.

One list, three readers: ``rlaif export`` writes each recipe of its format as a shell script
beside the data (paths filled in), the docs print them, and
``tests/integration/test_handoffs.py`` parses every one with the trainer's own argument parser
or Hydra config (``TRAINERS`` names the releases that test installs). When a release renames a
flag, that test fails here rather than on a user's cluster.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

TRAINERS = {"openrlhf": "0.11.2", "verl": "0.9.1"}
"""The releases the recipes are written for and tested against."""

HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Builtin models by the hub id another trainer loads them with."""


@dataclass(frozen=True)
class Recipe:
    """A trainer's command line; ``{placeholders}`` are filled by ``argv``:
    ``model`` (the SFT model), ``data`` (the export folder), ``reward_url`` (``rlaif
    serve-reward``'s address) and ``reward_model`` (``<run>/train/reward_model``)."""

    name: str
    trainer: str
    fmt: str
    title: str
    launcher: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    needs_reward_model: bool = False

    def argv(self, **values: str) -> list[str]:
        """The trainer's own arguments (after the launcher), placeholders filled."""
        return [arg.format(**values) for arg in self.args]

    def script(self, **values: str) -> str:
        """A bash script that runs the recipe, one flag (or override) a line."""
        lines: list[str] = []
        for arg in self.argv(**values):
            if lines and not arg.startswith("-") and lines[-1].startswith("--"):
                lines[-1] += " " + shlex.quote(arg)
            else:
                lines.append(shlex.quote(arg))
        env = [shlex.quote(e.format(**values)) for e in self.env]
        head = " ".join([*env, *self.launcher])
        body = " \\\n  ".join([head, *lines])
        return (
            "#!/usr/bin/env bash\n"
            f"# {self.title}: written by `rlaif export` for {self.trainer} "
            f"{TRAINERS[self.trainer]}.\n"
            "# Edit the model, batch sizes and GPU counts to your cluster.\n"
            f"set -euo pipefail\n{body}\n"
        )


_OPENRLHF_PAIRS = (
    "--data.dataset", "{data}/preferences.jsonl",
    "--data.apply_chat_template",
    "--data.prompt_key", "prompt",
    "--data.chosen_key", "chosen",
    "--data.rejected_key", "rejected",
    "--data.max_len", "4096",
    "--ds.zero_stage", "3",
    "--ds.param_dtype", "bf16",
    "--train.batch_size", "128",
    "--train.micro_batch_size", "1",
    "--train.max_epochs", "1",
    "--model.gradient_checkpointing_enable",
)  # fmt: skip

_VERL_GRPO = (
    "algorithm.adv_estimator=grpo",
    "data.train_files={data}/train.parquet",
    "data.val_files={data}/test.parquet",
    "data.train_batch_size=256",
    "data.max_prompt_length=1024",
    "data.max_response_length=1024",
    "actor_rollout_ref.model.path={model}",
    "actor_rollout_ref.actor.optim.lr=1e-6",
    "actor_rollout_ref.actor.ppo_mini_batch_size=64",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.actor.use_kl_loss=True",
    "actor_rollout_ref.actor.kl_loss_coef=0.01",
    "actor_rollout_ref.actor.kl_loss_type=low_var_kl",
    "actor_rollout_ref.rollout.name=vllm",
    "actor_rollout_ref.rollout.n=4",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
    "trainer.n_gpus_per_node=8",
    "trainer.nnodes=1",
    "trainer.total_epochs=3",
)

# fmt: off
RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "openrlhf_dpo", "openrlhf", "openrlhf", "DPO on the exported pairs",
        ("deepspeed", "--module", "openrlhf.cli.train_dpo"),
        ("--model.model_name_or_path", "{model}", *_OPENRLHF_PAIRS,
         "--model.beta", "0.1", "--adam.lr", "5e-7", "--ckpt.output_dir", "checkpoints/dpo"),
    ),
    Recipe(
        "openrlhf_rm", "openrlhf", "openrlhf", "A reward model on the exported pairs",
        ("deepspeed", "--module", "openrlhf.cli.train_rm"),
        ("--model.model_name_or_path", "{model}", *_OPENRLHF_PAIRS,
         "--adam.lr", "9e-6", "--ckpt.output_dir", "checkpoints/rm"),
    ),
    Recipe(
        "openrlhf_ppo", "openrlhf", "openrlhf",
        "PPO (group-normalised, no critic) rewarded by `rlaif serve-reward`",
        ("python3", "-m", "openrlhf.cli.train_ppo_ray"),
        (
            "--actor.model_name_or_path", "{model}",
            "--data.prompt_dataset", "{data}/prompts.jsonl",
            "--data.input_key", "prompt",
            "--data.label_key", "label",
            "--data.apply_chat_template",
            "--reward.remote_url", "{reward_url}/get_reward",
            "--algo.advantage.estimator", "group_norm",
            "--rollout.n_samples_per_prompt", "4",
            "--algo.kl.init_coef", "0.01",
            "--algo.kl.use_loss",
            "--algo.kl.estimator", "k3",
            "--rollout.batch_size", "128",
            "--rollout.micro_batch_size", "8",
            "--rollout.max_new_tokens", "1024",
            "--train.batch_size", "128",
            "--train.micro_batch_size", "4",
            "--data.max_len", "2048",
            "--actor.adam.lr", "5e-7",
            "--vllm.num_engines", "2",
            "--vllm.tensor_parallel_size", "1",
            "--ds.zero_stage", "3",
            "--ds.param_dtype", "bf16",
            "--ckpt.output_dir", "checkpoints/ppo",
        ),
    ),
    Recipe(
        "verl_grpo_judge", "verl", "verl", "GRPO rewarded by `rlaif serve-reward` (the shim)",
        ("python3", "-m", "verl.trainer.main_ppo"),
        (
            *_VERL_GRPO,
            "reward.custom_reward_function.path={data}/verl_reward.py",
            "reward.custom_reward_function.name=compute_score",
        ),
        env=("RLAIF_REWARD_URL={reward_url}",),
    ),
    Recipe(
        "verl_grpo_reward_model", "verl", "verl", "GRPO rewarded by the run's reward model",
        ("python3", "-m", "verl.trainer.main_ppo"),
        (
            *_VERL_GRPO,
            "reward.reward_model.enable=True",
            "reward.reward_model.model_path={reward_model}",
            "reward.reward_model.rollout.name=vllm",
        ),
        needs_reward_model=True,
    ),
)
# fmt: on


def hub_id(model: str) -> str:
    return HUB_IDS.get(model, model)


def write_scripts(
    fmt: str, out: Path, model: str, reward_url: str, reward_model: Path | None
) -> list[Path]:
    """Write format ``fmt``'s recipes into ``out`` as ``<name>.sh``; a reward-model recipe
    only when the run trained one."""
    values = {
        "model": hub_id(model),
        "data": str(out.resolve()),
        "reward_url": reward_url.rstrip("/"),
        "reward_model": str(reward_model.resolve()) if reward_model else "",
    }
    written = []
    for recipe in RECIPES:
        if recipe.fmt != fmt or (recipe.needs_reward_model and reward_model is None):
            continue
        path = out / f"{recipe.name}.sh"
        path.write_text(recipe.script(**values), encoding="utf-8")
        path.chmod(0o755)
        written.append(path)
    return written
