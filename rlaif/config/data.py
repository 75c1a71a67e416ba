"""Typed configuration of the data stages: where prompts come from, how they are sampled
and paired, and how judgments aggregate into preferences."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from rlaif.config.base import Dtype
from rlaif.config.base import Strict as _Strict
from rlaif.config.result import Added, NoResult


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
    check_model: Annotated[bool, NoResult()] = True
    """Preflight checks that the server's model list names the model; false for proxies and
    deployments whose names the list does not show. The server and the key are checked
    either way."""


class SampleConfig(_Strict):
    backend: Literal["auto", "transformers", "vllm", "openai"] = "auto"
    """``auto`` uses vLLM when it is importable and a GPU is present, transformers otherwise;
    ``openai`` asks the server in ``server`` for the SFT model's answers (a trained policy,
    which no server serves yet, samples with ``auto``)."""
    server: Annotated[ServedModelConfig | None, Added()] = None
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
    judge_weights: Annotated[Literal["equal", "agreement"], Added()] = "equal"
    """How a panel's judges count in a pair's mean P(a wins): equally, or by the log-odds of
    each judge's agreement with people measured by ``rlaif judge-eval --calibrate`` (every
    judge then needs a ``calibration`` file)."""
    length_correction: bool = False
    """Remove the judge's measured length preference (a logistic term on the standardised
    length difference) from each pair before deciding; on when the judge is known to favour
    length for its own sake."""
    human_labels: Annotated[Literal["ignore", "override"], Added()] = "ignore"
    """Labels people gave pairs in ``rlaif review`` (kept in the judgment store): ignored, or
    put in place of the judges' preference for the pairs they cover (A or B: that answer
    chosen with ``p_chosen`` 1; tie: a tie; flag: the pair left out). With
    ``best_vs_worst`` they enter the Bradley-Terry fit in place of the judges'."""
    seed: int = 0
