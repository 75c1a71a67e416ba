"""Typed configuration of training (DPO, the reward model, PPO, GRPO; TRL's ``*Config``
classes are the model) and of evaluation."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from rlaif.config.base import Dtype
from rlaif.config.base import Strict as _Strict
from rlaif.config.monitor import MonitorConfig
from rlaif.config.result import Added, NoResult
from rlaif.pipelines import accelerate_config_path


class RewardModelConfig(_Strict):
    """A reward model trained with ``trl.RewardTrainer`` (Bradley-Terry loss; the ``margin``
    column of the preference dataset is used when present)."""

    learning_rate: float = Field(default=1e-5, gt=0.0)
    max_steps: int = Field(default=50, ge=1)
    per_device_train_batch_size: int = Field(default=4, ge=1)
    max_length: int = Field(default=512, ge=16)
    eval_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Preferences held out to report pairwise accuracy."""
    lora: bool = False
    lora_r: int = Field(default=16, ge=1)
    seed: int = 0
    trl: Annotated[dict[str, Any], Added()] = Field(default_factory=dict)
    """Any other argument of ``trl.RewardConfig``, passed as given (e.g.
    ``lr_scheduler_type: cosine``): checked in preflight against the class, part of the
    config's hash. One that rlaif sets from the fields above is refused."""


class PPOConfig(_Strict):
    """PPO with a KL penalty to the frozen SFT model (the published RLHF recipe)."""

    steps: int = Field(default=20, ge=1)
    """Rollout-and-update iterations."""
    rollout_batch_size: int = Field(default=16, ge=1)
    ppo_epochs: int = Field(default=2, ge=1)
    minibatch_size: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=1e-5, gt=0.0)
    max_new_tokens: int = Field(default=48, ge=1)
    temperature: float = Field(default=0.7, gt=0.0)
    kl_coef: float = Field(default=0.05, ge=0.0)
    adaptive_kl: bool = False
    kl_target: float = Field(default=6.0, gt=0.0)
    kl_horizon: int = Field(default=10000, ge=1)
    gamma: float = Field(default=1.0, ge=0.0, le=1.0)
    lam: float = Field(default=0.95, ge=0.0, le=1.0)
    cliprange: float = Field(default=0.2, gt=0.0)
    cliprange_value: float = Field(default=0.2, gt=0.0)
    vf_coef: float = Field(default=0.1, ge=0.0)
    eos_penalty: float | None = -1.0
    """Added to the reward of a response cut off at ``max_new_tokens``; null to disable."""
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    rollout_backend: Literal["auto", "transformers", "vllm"] = "auto"
    """Who generates rollouts: ``auto`` uses vLLM when it imports and a GPU is present,
    transformers ``generate`` otherwise. Log-probabilities always come from the policy."""
    vllm_gpu_memory_utilization: float = Field(default=0.3, gt=0.0, le=1.0)
    """GPU memory share of the in-process vLLM engine (the policy trains beside it)."""
    vllm_dtype: Dtype = "auto"
    """Weights of the vLLM engine; the policy's updated weights are cast to it."""
    seed: int = 0


DpoLoss = Literal[
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
]  # fmt: skip
"""The losses ``trl.DPOTrainer`` 1.16 implements."""


class DpoConfig(_Strict):
    """``trl.DPOTrainer`` with the SFT model as its reference."""

    beta: float = Field(default=0.1, gt=0.0)
    loss_type: DpoLoss = "sigmoid"
    learning_rate: float = Field(default=5e-6, gt=0.0)
    max_steps: int = Field(default=20, ge=1)
    per_device_train_batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=512, ge=16)
    warmup_steps: int = Field(default=0, ge=0)
    logging_steps: int = Field(default=1, ge=1)
    soft_labels: Annotated[bool, Added()] = False
    """Each pair's ``p_chosen`` is its target (the conservative DPO loss per pair), so an
    unsure judgment asks for a small margin; needs ``loss_type: sigmoid``."""
    trl: Annotated[dict[str, Any], Added()] = Field(default_factory=dict)
    """Any other argument of ``trl.DPOConfig``, passed as given (e.g. ``label_smoothing: 0.1``):
    checked in preflight against the class, part of the config's hash. One that rlaif sets
    from the fields above is refused."""

    @model_validator(mode="after")
    def _soft_labels_need_sigmoid(self) -> DpoConfig:
        if self.soft_labels and self.loss_type != "sigmoid":
            raise ValueError(
                f"soft_labels: needs loss_type 'sigmoid' (the loss it softens), not "
                f"'{self.loss_type}'"
            )
        return self


class GrpoConfig(_Strict):
    """``trl.GRPOTrainer`` with the pipeline's judges as the reward: each prompt's group of
    completions is judged against the SFT model's answer, and ``beta`` weighs the KL penalty
    to the SFT model."""

    learning_rate: float = Field(default=1e-6, gt=0.0)
    max_steps: int = Field(default=50, ge=1)
    beta: float = Field(default=0.04, ge=0.0)
    num_generations: int = Field(default=4, ge=2)
    """Completions per prompt: the group whose rewards are compared with each other."""
    per_device_train_batch_size: int = Field(default=4, ge=1)
    """Completions per step (a multiple of ``num_generations``)."""
    max_completion_length: int = Field(default=64, ge=1)
    temperature: float = Field(default=1.0, gt=0.0)
    logging_steps: int = Field(default=1, ge=1)
    trl: Annotated[dict[str, Any], Added()] = Field(default_factory=dict)
    """Any other argument of ``trl.GRPOConfig``, passed as given (e.g. ``loss_type: dr_grpo``):
    checked in preflight against the class, part of the config's hash. One that rlaif sets
    from the fields above is refused."""

    @model_validator(mode="after")
    def _whole_groups(self) -> GrpoConfig:
        if self.per_device_train_batch_size % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) must be a "
                f"multiple of num_generations ({self.num_generations}): each step takes whole "
                "groups"
            )
        return self


class TrainConfig(_Strict):
    """How the policy learns from the preferences.

    ``dpo``: ``trl.DPOTrainer`` with the SFT model as reference (``dpo``).
    ``rm_ppo``: a reward model (``reward_model``), then PPO against it (``ppo``).
    ``d_rlaif``: PPO scored directly by the first judge, which needs a pointwise rubric.
    ``grpo``: ``trl.GRPOTrainer``, the judges scoring each step's completions live (``grpo``).
    """

    method: Literal["dpo", "rm_ppo", "d_rlaif", "grpo"] = "dpo"
    dtype: Dtype = "auto"
    """Mixed-precision compute dtype of DPO, the reward model and PPO (weights and optimizer
    stay float32): ``auto`` is bf16 where the device computes it natively, else float32 on a
    CPU and fp16 on a GPU without bf16."""
    save_steps: int = Field(default=25, ge=1)
    """Checkpoint every this many optimizer steps (DPO, reward model and PPO); training
    resumes from the newest complete checkpoint."""
    accelerate_config: str | None = None
    """An ``accelerate`` config YAML (multi-GPU, DeepSpeed, FSDP), or a shipped one by name
    (``cpu``, ``multi_gpu``, ``fsdp``, ``deepspeed_zero2``): training runs under ``accelerate
    launch`` with it; null trains in this process."""
    seed: int = 0
    report_to: Annotated[list[Literal["tensorboard", "wandb", "mlflow"]], NoResult()] = Field(
        default_factory=list
    )
    """Where DPO, the reward model and PPO send their training metrics (nowhere by default):
    TensorBoard under each phase's checkpoint folder (``tensorboard --logdir
    <run>/checkpoints``); wandb and mlflow as their own environment variables configure them.
    Not part of the config's hash or any fingerprint: adding a tracker retrains nothing."""
    dpo: DpoConfig = DpoConfig()
    reward_model: RewardModelConfig = RewardModelConfig()
    ppo: PPOConfig = PPOConfig()
    grpo: Annotated[GrpoConfig, Added()] = GrpoConfig()
    monitor: Annotated[MonitorConfig | None, Added()] = None
    """A panel that watches the policy while it trains and stops reward hacking (off while
    null); see :class:`MonitorConfig`."""

    @model_validator(mode="before")
    @classmethod
    def _flat_dpo_keys(cls, data: Any) -> Any:
        """DPO settings once sat directly under ``train:``; they still work there, with a
        message naming where they live now."""
        if not isinstance(data, dict):
            return data
        flat = [k for k in DpoConfig.model_fields if k in data and k != "trl"]
        if not flat:
            return data
        data = dict(data)
        nested = dict(data.get("dpo") or {})
        for key in flat:  # an old key given now (say with --set) wins over the file's new one
            nested[key] = data.pop(key)
        data["dpo"] = nested
        logging.getLogger(__name__).warning(
            "train.%s: DPO settings now live under train.dpo (e.g. train.dpo.%s); the old "
            "key still works for now",
            ", train.".join(flat),
            flat[0],
        )
        return data

    @model_validator(mode="after")
    def _monitor_sees_whole_weights(self) -> TrainConfig:
        if self.monitor is not None and self.accelerate_config:
            launch = yaml.safe_load(accelerate_config_path(self.accelerate_config).read_text())
            if launch.get("distributed_type") == "FSDP" or (
                (launch.get("deepspeed_config") or {}).get("zero_stage") == 3
            ):
                raise ValueError(
                    "monitor: each process answers the monitor's prompts with the whole policy, "
                    "which FSDP and DeepSpeed ZeRO-3 shard; use multi-GPU (DDP) or ZeRO-1/2"
                )
        return self

    @field_validator("accelerate_config")
    @classmethod
    def _accelerate_config_exists(cls, value: str | None) -> str | None:
        if value is not None:
            accelerate_config_path(value)
        return value


class EvaluateConfig(_Strict):
    """Policy vs SFT on the held-out prompts, judged by the judge stage's judges."""

    max_new_tokens: int | None = Field(default=None, ge=1)
    """Defaults to ``sample.max_new_tokens``."""
    temperature: float = Field(default=0.0, ge=0.0)
    bootstrap: int = Field(default=2000, ge=100)
    seed: int = 0
