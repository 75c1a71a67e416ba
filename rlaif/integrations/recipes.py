"""Command lines that train on an ``rlaif export`` with OpenRLHF or verl.

One list, three readers: ``rlaif export`` writes each recipe of its format as a shell script
beside the data (paths filled in), the docs print them, and
``tests/integration/test_handoffs.py`` parses every one with the trainer's own argument parser
or Hydra config (``TRAINERS`` names the releases that test installs). When a release renames a
flag, that test fails here rather than on a user's cluster.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

TRAINERS = {"openrlhf": "0.11.2", "verl": "0.9.1"}
"""The releases the recipes are written for and tested against."""

HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Builtin models by the hub id another trainer loads them with."""


SCRIPT_VALUES = {
    "data": "$DATA",
    "model": "$MODEL",
    "reward_url": "$RLAIF_REWARD_URL",
    "reward_model": "$DATA/reward_model",
}
"""What a script names each placeholder by: variables set at its top (each may be given in
the environment instead), so the folder can be copied anywhere a cluster reads it."""


@dataclass(frozen=True)
class Recipe:
    """A trainer's command line; ``{placeholders}`` are filled by ``argv``:
    ``model`` (the SFT model), ``data`` (the export folder), ``reward_url`` (``rlaif
    serve-reward``'s address) and ``reward_model`` (the reward model inside the folder)."""

    name: str
    trainer: str
    fmt: str
    title: str
    launcher: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    needs_reward_model: bool = False
    scale: str = ""
    """How to run it past one 8-GPU node."""

    def argv(self, **values: str) -> list[str]:
        """The trainer's own arguments (after the launcher), placeholders filled."""
        return [arg.format(**values) for arg in self.args]

    def uses(self, placeholder: str) -> bool:
        return any(f"{{{placeholder}}}" in arg for arg in (*self.args, *self.env))

    def script(self, model: str, reward_url: str) -> str:
        """A bash script that runs the recipe, one flag (or override) a line, its paths
        relative to the script's own folder (``$DATA``) and its model and reward server in
        variables with these defaults."""
        lines: list[str] = []
        for arg in self.argv(**SCRIPT_VALUES):
            if lines and not arg.startswith("-") and lines[-1].startswith("--"):
                lines[-1] += " " + _quote(arg)
            else:
                lines.append(_quote(arg))
        body = " \\\n  ".join([" ".join(self.launcher), *lines])
        settings = [
            'DATA="${DATA:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"',
            f'MODEL="${{MODEL:-{model}}}"',
        ]
        if self.uses("reward_url"):
            # the trainer's workers read it from their environment (the reward shim)
            export = "export " if any("RLAIF_REWARD_URL" in e for e in self.env) else ""
            settings.append(f'{export}RLAIF_REWARD_URL="${{RLAIF_REWARD_URL:-{reward_url}}}"')
        scale = f"# To scale past one node: {self.scale}\n" if self.scale else ""
        return (
            "#!/usr/bin/env bash\n"
            f"# {self.title}: written by `rlaif export` for {self.trainer} "
            f"{TRAINERS[self.trainer]}, sized for one node of 8 GPUs.\n"
            f"{scale}"
            "# DATA (this folder), MODEL and RLAIF_REWARD_URL may be set in the environment.\n"
            "set -euo pipefail\n" + "\n".join(settings) + f"\n\n{body}\n"
        )


def _quote(arg: str) -> str:
    """Shell quoting that leaves a recipe's ``$VARIABLES`` to be expanded."""
    if "$" in arg and not any(c in arg for c in '"`\\'):
        return f'"{arg}"'
    return shlex.quote(arg)


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
            "--actor.num_nodes", "1",
            "--actor.num_gpus_per_node", "8",
            "--ref.num_nodes", "1",
            "--ref.num_gpus_per_node", "8",
            "--vllm.num_engines", "8",
            "--vllm.tensor_parallel_size", "1",
            "--vllm.gpu_memory_utilization", "0.5",
            "--train.colocate_all",
            "--vllm.enable_sleep",
            "--ds.enable_sleep",
            "--ds.zero_stage", "3",
            "--ds.param_dtype", "bf16",
            "--ckpt.output_dir", "checkpoints/ppo",
        ),
        scale="set --actor.num_nodes and --ref.num_nodes to the node count, and "
        "--vllm.num_engines to 8 per node (colocated: actor GPUs = engines x tensor parallel)",
    ),
    Recipe(
        "verl_grpo_judge", "verl", "verl", "GRPO rewarded by `rlaif serve-reward` (the shim)",
        ("python3", "-m", "verl.trainer.main_ppo"),
        (
            *_VERL_GRPO,
            "reward.custom_reward_function.path={data}/rlaif_http_reward.py",
            "reward.custom_reward_function.name=compute_score",
        ),
        env=("RLAIF_REWARD_URL={reward_url}",),
        scale="set trainer.nnodes to the node count and raise data.train_batch_size with it",
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
        scale="set trainer.nnodes to the node count and raise data.train_batch_size with it",
    ),
)
# fmt: on


def hub_id(model: str) -> str:
    return HUB_IDS.get(model, model)


def write_scripts(
    fmt: str, out: Path, model: str, reward_url: str, reward_model: Path | None
) -> list[Path]:
    """Write format ``fmt``'s recipes into ``out`` as ``<name>.sh``; a reward-model recipe
    only when the run trained one, whose model is copied into ``out/reward_model``."""
    written = []
    for recipe in RECIPES:
        if recipe.fmt != fmt or (recipe.needs_reward_model and reward_model is None):
            continue
        if recipe.needs_reward_model and reward_model is not None:
            shutil.copytree(reward_model, out / "reward_model", dirs_exist_ok=True)
        path = out / f"{recipe.name}.sh"
        path.write_text(recipe.script(hub_id(model), reward_url.rstrip("/")), encoding="utf-8")
        path.chmod(0o755)
        written.append(path)
    return written
