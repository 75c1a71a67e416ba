"""Typed pipeline configuration, loaded from YAML (the shipped ones in ``rlaif/pipelines/``).

Every model forbids unknown keys, so a typo in a nightly config fails before any
compute is spent, with the file, line and field named.
"""

from __future__ import annotations

import difflib
import logging
from functools import reduce
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from rlaif.config.base import Dtype, UniqueKeyLoader, key_lines
from rlaif.config.base import Strict as _Strict
from rlaif.config.judge import (  # noqa: F401 (re-exported: the configs' public home)
    JUDGE_BACKENDS,
    AdaptiveOrdersConfig,
    AnthropicJudgeConfig,
    BatchConfig,
    ChecklistsConfig,
    JudgeBackendConfig,
    JudgeConfig,
    OpenAIJudgeConfig,
    Price,
    PythonJudgeConfig,
    TransformersJudgeConfig,
    VllmJudgeConfig,
)
from rlaif.config.monitor import MonitorConfig, MonitorStopConfig  # noqa: F401 (re-exported)
from rlaif.errors import ConfigError
from rlaif.executors.config import RayConfig
from rlaif.hashing import stable_hash
from rlaif.models.loading import DEFAULT_MODEL
from rlaif.pipelines import accelerate_config_path, builtin_pipelines
from rlaif.run.stage_table import NAMES

STAGES = NAMES
"""The stage names in order (declared in :mod:`rlaif.run.stage_table`)."""


class PromptsConfig(_Strict):
    """Where prompts come from and how they split into training and held-out evaluation."""

    source: str = "builtin"
    """``builtin``, ``builtin_conversations`` (multi-turn), a .jsonl/.json/.csv/.parquet file, a
    ``save_to_disk`` folder or a hub name; a prompt is a text or a conversation (messages)."""
    prompt_column: str = "prompt"
    id_column: str | None = "id"
    reference_column: str | None = None
    """A reference answer per prompt, for rubrics that compare against one."""
    split: str = "train"
    limit: int | None = Field(default=None, ge=1)
    max_prompt_tokens: int = Field(default=1024, ge=1)
    """Longer prompts (in the policy's tokens) are skipped and counted, never sampled."""
    eval_size: int = Field(default=16, ge=0)
    shuffle_seed: int = 0


class ServedModelConfig(_Strict):
    """Where the SFT model is served (``sample.backend: openai``): any OpenAI-compatible
    ``/v1/chat/completions`` (vLLM, SGLang, TGI, a hosted endpoint)."""

    base_url: str
    """e.g. ``http://gpu-box:8000/v1``."""
    served_model: str | None = None
    """The model's name at the server (default: the pipeline's ``model``)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """The environment variable holding the key; null for a server without keys."""
    max_concurrency: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    check_model: bool = True
    """Preflight checks that the server's model list names the model; false for proxies and
    deployments whose names the list does not show. The server and the key are checked
    either way."""


class SampleConfig(_Strict):
    backend: Literal["auto", "transformers", "vllm", "openai"] = "auto"
    """``auto`` uses vLLM when it is importable and a GPU is present, transformers otherwise;
    ``openai`` asks the server in ``server`` for the SFT model's answers (a trained policy,
    which no server serves yet, samples with ``auto``)."""
    server: ServedModelConfig | None = None
    n: int = Field(default=4, ge=1)
    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.8, ge=0.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    batch_size: int = Field(default=16, ge=1)
    dtype: Dtype = "auto"
    """``auto``: bf16 where the device computes it natively, else float32 on a CPU (fp16 on
    an old GPU); also the dtype of evaluation's generation and its KL estimate."""
    system_prompt: str | None = None
    seed: int = 0
    """Chunk ``i`` samples with seed ``seed + i``, so a resumed stage reproduces it exactly."""
    chunk_size: int = Field(default=256, ge=1)
    """Prompts per durable chunk: a crash loses at most the chunk being sampled."""
    gpu_memory_utilization: float = Field(default=0.5, gt=0.0, le=1.0)
    """GPU memory share of the vLLM engine (``backend: vllm``)."""

    @model_validator(mode="after")
    def _served_needs_a_server(self) -> SampleConfig:
        if self.backend == "openai" and self.server is None:
            raise ValueError(
                "backend: 'openai' samples from a served model: set sample.server.base_url "
                "(e.g. http://localhost:8000/v1)"
            )
        return self

    def local(self) -> SampleConfig:
        """These settings for a model on this machine (a trained policy: no server has it)."""
        return self.model_copy(update={"backend": "auto"}) if self.backend == "openai" else self


class PairConfig(_Strict):
    strategy: Literal["all_pairs", "random_pairs"] = "all_pairs"
    k: int = Field(default=2, ge=1)
    """Pairs per prompt for ``random_pairs``."""
    max_length_ratio: float | None = Field(default=None, ge=1.0)
    """Length-balanced pairs: skip pairs whose longer response is more than this many times
    the shorter (in characters), so length cannot decide the comparison."""
    skip_identical: bool = True
    seed: int = 0


class AggregateConfig(_Strict):
    method: Literal["mean", "majority"] = "mean"
    """How a pair's judgments (orders x judges) combine: mean P(a wins), or the share of hard
    votes for a."""
    ties: Literal["drop", "keep"] = "drop"
    """Pairs whose hard verdicts disagree (across orders or judges): dropped, or kept as soft
    labels."""
    min_margin: float = Field(default=0.0, ge=0.0, le=1.0)
    """Drop preferences whose margin |2 * p_chosen - 1| is below this."""
    selection: Literal["all_pairs", "best_vs_worst", "random_pairs"] = "all_pairs"
    """Which preferences to emit: every judged pair, the Bradley-Terry best vs worst response of
    each prompt, or ``k`` random judged pairs per prompt."""
    k: int = Field(default=2, ge=1)
    incomplete: Literal["hold", "publish"] = "hold"
    """A pair lacking a valid judgment from any judge in any order it was asked (it failed,
    the budget stopped it, it awaits a batch, or the answer was unreadable) is held back
    (``hold``; it comes back when a later run completes it), or published marked
    ``complete: false`` (``publish``)."""
    judge_weights: Literal["equal", "agreement"] = "equal"
    """How a panel's judges count in a pair's mean P(a wins): equally, or by the log-odds of
    each judge's agreement with people measured by ``rlaif judge-eval --calibrate`` (every
    judge then needs a ``calibration`` file)."""
    length_correction: bool = False
    """Remove the judge's measured length preference (a logistic term on the standardised
    length difference) from each pair before deciding; on when the judge is known to favour
    length for its own sake."""
    human_labels: Literal["ignore", "override"] = "ignore"
    """Labels people gave pairs in ``rlaif review`` (kept in the judgment store): ignored, or
    put in place of the judges' preference for the pairs they cover (A or B: that answer
    chosen with ``p_chosen`` 1; tie: a tie; flag: the pair left out). With
    ``best_vs_worst`` they enter the Bradley-Terry fit in place of the judges'."""
    seed: int = 0


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
    soft_labels: bool = False
    """Each pair's ``p_chosen`` is its target (the conservative DPO loss per pair), so an
    unsure judgment asks for a small margin; needs ``loss_type: sigmoid``."""

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
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(default_factory=list)
    """Where DPO, the reward model and PPO send their training metrics (nowhere by default):
    TensorBoard under each phase's checkpoint folder (``tensorboard --logdir
    <run>/checkpoints``); wandb and mlflow as their own environment variables configure them.
    Not part of the config's hash or any fingerprint: adding a tracker retrains nothing."""
    dpo: DpoConfig = DpoConfig()
    reward_model: RewardModelConfig = RewardModelConfig()
    ppo: PPOConfig = PPOConfig()
    grpo: GrpoConfig = GrpoConfig()
    monitor: MonitorConfig | None = None
    """A panel that watches the policy while it trains and stops reward hacking (off while
    null); see :class:`MonitorConfig`."""

    @model_validator(mode="before")
    @classmethod
    def _flat_dpo_keys(cls, data: Any) -> Any:
        """DPO settings once sat directly under ``train:``; they still work there, with a
        message naming where they live now."""
        if not isinstance(data, dict):
            return data
        flat = [k for k in DpoConfig.model_fields if k in data]
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


class NightlyConfig(_Strict):
    """``rlaif nightly``: each night samples and judges only the prompts that no earlier
    successful night has seen, and appends its preferences to a cumulative dataset."""

    max_prompts: int | None = Field(default=None, ge=1)
    """New prompts per night at most; the rest wait for later nights."""
    max_cost_usd: float | None = Field(default=None, ge=0)
    """Judge spending per night (dated run), across its stages and re-invocations."""
    train: bool = False
    """Train on the cumulative preference dataset (then evaluate) after each night."""
    policy: Literal["sft", "latest"] = "sft"
    """Whose answers a night judges: the SFT model's, or (``latest``, with ``train``) those of
    the policy the latest trained night made, which is also where tonight's DPO starts (the
    SFT model stays its reference)."""


class StopWhen(_Strict):
    min_gain: float | None = Field(default=None, ge=0.0, le=0.5)
    """Stop after a round whose win rate over the one before (round 1: SFT) is < 0.5 + this."""


class RoundsConfig(_Strict):
    """On-policy rounds for ``rlaif run``: round r samples from round r-1's trained policy
    (round 1 from the SFT model), judges, and trains from that policy on its preferences."""

    count: int = Field(default=2, ge=1)
    reference: Literal["sft", "previous"] = "sft"
    """DPO's reference each round: the SFT model, or the policy the round started from."""
    replay: float = Field(default=0.0, ge=0.0, le=1.0)
    """Earlier rounds' preferences added to a round's training set, as a share of its own."""
    stop_when: StopWhen = StopWhen()


class PipelineConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    model: str = DEFAULT_MODEL
    """The SFT policy: a built-in name, a local HF directory or a cached hub id."""
    output_dir: str = "outputs"
    prompts: PromptsConfig = PromptsConfig()
    sample: SampleConfig = SampleConfig()
    pair: PairConfig = PairConfig()
    judge: JudgeConfig = JudgeConfig()
    aggregate: AggregateConfig = AggregateConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    nightly: NightlyConfig = NightlyConfig()
    rounds: RoundsConfig | None = None
    """On-policy rounds (``rlaif run``); null: one run from the SFT model."""
    executor: Literal["local", "ray"] = "local"
    """Where sampling and judging run: this process, or Ray actors (``ray:``)."""
    ray: RayConfig = RayConfig()

    def ray_executor(self) -> RayConfig | None:
        """The Ray settings when ``executor: ray``; None runs the stages here."""
        return self.ray if self.executor == "ray" else None

    @model_validator(mode="after")
    def _start_policies_need_a_trainer_that_can_start_there(self) -> PipelineConfig:
        """Starting from a trained policy with the SFT model as the anchor is DPO's (a
        separate reference); PPO and GRPO anchor to the model they start from."""
        method = self.train.method
        if self.rounds and self.rounds.reference == "sft" and method != "dpo":
            raise ValueError(
                f"rounds.reference: 'sft' needs train.method dpo (method '{method}' anchors "
                "its KL to the model it starts from: use reference: previous)"
            )
        if self.nightly.policy == "latest":
            if not self.nightly.train:
                raise ValueError("nightly.policy: 'latest' needs nightly.train: true")
            if method != "dpo":
                raise ValueError(f"nightly.policy: 'latest' needs train.method dpo, not {method}")
        return self

    def hash(self) -> str:
        return stable_hash(self.stable_dump())

    def judgment_store_path(self) -> Path:
        """The SQLite judgment store (``judge.cache``; by default the one every run under
        ``output_dir`` shares)."""
        return Path(self.judge.cache or Path(self.output_dir) / "judgments.sqlite")

    def stable_dump(self) -> dict[str, Any]:
        """The config as its hash and the stage fingerprints see it: keys added after runs
        were named by them are left out while at their defaults, so upgrading rlaif keeps
        existing run directories current, and trackers (``train.report_to``) always."""
        data = self.model_dump(mode="json")
        for judge in data["judge"]["judges"]:
            if judge["calibration"] is None:
                judge.pop("calibration")
            judge.pop("check_model", None)  # what preflight asks changes no result
            if judge.get("mode") == "pairwise":  # a python judge's
                judge.pop("mode")
        added = {
            ("judge", "adaptive"): AdaptiveOrdersConfig().model_dump(mode="json"),
            ("judge", "permutations"): 2,
            ("judge", "checklists"): ChecklistsConfig().model_dump(mode="json"),
            ("train", "grpo"): GrpoConfig().model_dump(mode="json"),
            ("train", "dpo", "soft_labels"): False,
            ("train", "monitor"): None,
            ("train", "monitor", "stop", "min_round_gain"): None,
            ("train", "monitor", "stop", "max_attacks"): None,
            ("aggregate", "judge_weights"): "equal",
            ("aggregate", "human_labels"): "ignore",
            ("sample", "server"): None,
            ("nightly", "policy"): "sft",
        }
        for (*path, key), default in added.items():  # a section left out drops nothing
            section = reduce(lambda d, name: d.get(name) or {}, path, data)
            if key in section and section[key] == default:
                section.pop(key)
        if data["sample"].get("server"):
            data["sample"]["server"].pop("check_model")
        data["train"].pop("report_to")  # where metrics go changes no result
        if data["rounds"] is None:
            data.pop("rounds")
        data.pop("executor")  # where work runs changes no result
        data.pop("ray")
        return data


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a pipeline YAML (a path, or a shipped pipeline's name such as ``quickstart``),
    apply ``key=value`` overrides and validate it."""
    path = resolve_pipeline(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pipeline file ({exc.strerror})") from exc
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    for item in overrides or []:
        apply_override(data, item)
    return validate_pipeline(data, source=str(path), lines=key_lines(text))


def resolve_pipeline(ref: str | Path) -> Path:
    """A pipeline file's path: ``ref`` itself, or the shipped pipeline of that name."""
    path = Path(ref)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    shipped = builtin_pipelines()
    if str(ref) in shipped:
        return shipped[str(ref)]
    raise ConfigError(
        f"{ref}: no such pipeline file, and not the name of a shipped pipeline "
        f"({', '.join(shipped)})"
    )


def validate_pipeline(
    data: dict[str, Any], *, source: str = "<config>", lines: dict[tuple, int] | None = None
) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, lines or {})) from None


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``3``, ``[1]``)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. sample.n=8")
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: '{part}' is not a mapping")
        node = node.setdefault(part, {})
    last = parts[-1]
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({problem})") from exc
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {item!r}: cannot set '{last}' here")


def _format_errors(exc: ValidationError, source: str, lines: dict[tuple, int]) -> str:
    messages = []
    for err in exc.errors():
        loc = _drop_union_tags(tuple(err["loc"]))
        suggestion = _suggestion(tuple(err["loc"])) if err["type"] == "extra_forbidden" else ""
        dotted = ".".join(str(p) for p in loc) or "<top level>"
        where = source
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                where = f"{source}:{lines[loc[:n]]}"
                break
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + suggestion
        messages.append(f"{where}: {dotted}: {msg}")
    return "invalid pipeline config\n  " + "\n  ".join(messages)


def _drop_union_tags(loc: tuple) -> tuple:
    """Pydantic puts the discriminator value in the error path (``judges.0.python.x``); users
    never wrote it, so drop it."""
    return tuple(
        p
        for i, p in enumerate(loc)
        if not (p in JUDGE_BACKENDS and i > 0 and isinstance(loc[i - 1], int))
    )


def _suggestion(loc: tuple) -> str:
    model: type[BaseModel] | None = PipelineConfig
    for i, part in enumerate(loc[:-1]):
        if isinstance(part, int):
            continue
        if part in JUDGE_BACKENDS and i > 0 and isinstance(loc[i - 1], int):
            model = JUDGE_BACKENDS[part][0]
            continue
        if model is None:
            continue
        field = model.model_fields.get(str(part))
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
