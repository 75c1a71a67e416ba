"""Shared machinery for judges behind an HTTP API (OpenAI, Anthropic and compatible servers).

One place owns what every provider needs: a fixed pool of workers (requests in flight),
leaky-bucket limits on requests and tokens per minute (``aiolimiter``), a timeout per
request, and retries with ``tenacity`` (exponential backoff with jitter, ``Retry-After``
honoured) for what can succeed later: 429, 5xx, timeouts, dropped connections and garbled
bodies. A 400/401/403/404 would fail for every request alike, so it stops the stage at once.
The provider modules only build a request and read a response.
"""

from __future__ import annotations

import asyncio
import json
import os
import weakref
from collections import Counter
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from rlaif.errors import ConfigError
from rlaif.judges.base import Budget, JudgeRequest, OnResult, RubricJudge, Verdict
from rlaif.judges.failures import (
    FatalJudgeError,
    connection_failure,
    describe_error,
    retry_after,
    status_of,
)
from rlaif.judges.prompt_cache import CacheFirst, Rates, prefix_group, ttl_for
from rlaif.judges.session import Session
from rlaif.models.endpoints import check_served
from rlaif.redaction import secret_from_env
from rlaif.rubrics import load_rubric

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER_S = 120.0


INPUT_FIELDS = frozenset({"messages", "system"})
"""The rendered input: keyed on its own (:meth:`rlaif.judges.base.Judge.render`)."""
TRANSPORT_FIELDS = frozenset(
    {"stream", "stream_options", "user", "metadata", "store", "prompt_cache_key"}
)
"""Request fields that change how an answer travels, is filed or is cached, never what it
says: out of the cache key."""


def normalised_url(url: str, official: str | None = None) -> str | None:
    """``url`` as the cache key names a server: scheme, host (every loopback name as
    127.0.0.1), port and path without a trailing slash; None for the provider's own API."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if host in ("localhost", "::1") or host.startswith("127."):
        host = "127.0.0.1"
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    name = f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"
    if official is not None and name == normalised_url(official):
        return None
    return name


class ApiJudge(RubricJudge):
    """Base class: subclasses set ``kind`` and ``read_modes`` and implement ``_client``,
    ``_call`` (one request, no retries), ``request_body`` and ``read_response`` (a parsed
    response to a ``Verdict`` with usage, shared with the batch path) and ``batch_client``."""

    kind = "api"
    read_modes: tuple[str, ...] = ()
    transient_errors: tuple[type[BaseException], ...] = ()
    unreachable_errors: tuple[type[BaseException], ...] = (ConnectionError,)
    """Failures that mean nothing answers at the address (not a slow or failing server)."""
    slow_errors: tuple[type[BaseException], ...] = (TimeoutError,)
    official_url: str | None = None
    """The provider's own API (a base_url naming it keys as no base_url)."""
    base_url_env: str = ""
    """The variable the provider's SDK reads a base URL from when none is given."""
    cached_input_share: float = 1.0
    """A cached input token's price as a share of an input token's (``price`` may say its own)."""
    cache_write_shares: dict[str, float] = {"5m": 1.0, "1h": 1.0}
    """An input token written to the cache, as a share of an input token's, by lifetime."""

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.probed = False
        self.name = cfg.name
        self.model = cfg.model
        self.batch = cfg.batch
        self.rubric = load_rubric(cfg.rubric)
        if self.rubric.read not in self.read_modes:
            raise ConfigError(
                f"judge '{cfg.name}': rubric {self.rubric.path} reads '{self.rubric.read}', which "
                f"the {self.kind} backend cannot do (it reads: {', '.join(self.read_modes)})"
            )
        self.api_key = self._api_key()
        self.in_flight = 0
        self.attempts = 0
        self._session: Session | None = None

    def reach(self) -> None:
        where = self.cfg.base_url or f"the {self.kind} API"
        check_served(
            f"judge '{self.name}'",
            where,
            self.cfg.model,
            self.cfg.api_key_env,
            self._served_models,
            check_model=self.cfg.check_model,
        )

    def _served_models(self) -> list[str]:
        """The model ids the provider's model list names (a free call)."""
        raise NotImplementedError

    def _api_key(self) -> str:
        return secret_from_env(self.cfg.api_key_env, f"judge '{self.cfg.name}'")

    def identity(self) -> dict[str, Any]:
        """What the cache key names: the request the judge sends (:meth:`request_body`) less
        its input (keyed on its own), :data:`TRANSPORT_FIELDS` and what the rubric's read mode
        fixes (:meth:`read_fields`: the rubric is keyed by its hash); and the server, where
        it is not the provider's own API (:meth:`server`)."""
        left_out = INPUT_FIELDS | TRANSPORT_FIELDS | set(self.read_fields())
        sent = {k: v for k, v in self.request_body([]).items() if k not in left_out}
        server = self.server()
        return {
            "backend": self.kind,
            **sent,
            "read": self.rubric.read,
            "rubric": self.rubric.id,
            "rubric_hash": self.rubric.sha256,
            **({"server": server} if server else {}),
        }

    def server(self) -> str | None:
        """The server answers come from, as the cache key names it: ``server_id``, else the
        normalised ``base_url`` (or the SDK's base-URL variable); None for the provider's own
        API, where a model name names one model."""
        if self.cfg.server_id:
            return self.cfg.server_id
        url = self.cfg.base_url or os.environ.get(self.base_url_env)
        return None if url is None else normalised_url(url, self.official_url)

    def rates(self) -> Rates | None:
        """The judge's prices, with the provider's cache rates where ``price`` names none."""
        price = self.cfg.price
        if price is None:
            return None
        read, write = price.cached_input_per_mtok, price.cache_write_per_mtok
        return Rates(
            input=price.input_per_mtok,
            output=price.output_per_mtok,
            cached_input=self.cached_input_share * price.input_per_mtok if read is None else read,
            cache_write=(
                self.cache_write_shares[self.cache_ttl()] * price.input_per_mtok
                if write is None
                else write
            ),
        )

    def cost(
        self,
        input_tokens: int | None,
        output_tokens: int | None,
        cached_tokens: int | None = None,
        written_tokens: int | None = None,
    ) -> float | None:
        rates = self.rates()
        if rates is None:
            return None
        return rates.cost(input_tokens, output_tokens, cached_tokens, written_tokens)

    # -- prompt caching -------------------------------------------------------------------
    def caches(self) -> bool:
        """Whether requests ask the provider to cache their shared part
        (``prompt_cache.enabled``; by default at the provider's own API only)."""
        enabled = self.cfg.prompt_cache.enabled
        return self.server() is None if enabled is None else enabled

    def cache_ttl(self) -> str:
        return ttl_for(self.cfg.prompt_cache.ttl, batch=self.batch.enabled)

    def write_pays(self, sharing: int) -> bool:
        """Whether caching a prefix ``sharing`` requests send costs less than sending it in
        full each time: one write at the cache's write rate, the rest read at its read rate
        (Anthropic: a 1.25x write pays from 2 requests, a 2x one-hour write from 3)."""
        write = self.cache_write_shares[self.cache_ttl()]
        return write + (sharing - 1) * self.cached_input_share < sharing

    def shared(self, request: JudgeRequest) -> tuple[int, int]:
        """The characters of the request's last message that every request of the rubric
        shares and that every request about its prompt shares."""
        return self.rubric.shared_prefixes(
            self.render(request)[-1]["content"],
            request.prompt,
            request.reference,
            request.responses,
            request.items,
        )

    def bodies(self, requests: list[JudgeRequest]) -> tuple[list[dict[str, Any]], list[str]]:
        """What is sent for each of ``requests`` sent together (:meth:`body`), and where the
        judge :meth:`caches`, the group of requests about the same prompt each is in
        (:func:`prefix_group`; else no groups)."""
        if not self.caches():
            return [self.body(r) for r in requests], []
        shared = [self.shared(r) for r in requests]
        groups = [prefix_group(self.render(r), s[1]) for r, s in zip(requests, shared, strict=True)]
        sizes = Counter(groups)
        sent = [self.body(r, s, sizes[g]) for r, s, g in zip(requests, shared, groups, strict=True)]
        return sent, groups

    def body(
        self, request: JudgeRequest, shared: tuple[int, int] | None = None, sharing: int = 2
    ) -> dict[str, Any]:
        """What is sent for ``request``, online or in a batch: :meth:`request_body`, with the
        provider's prompt-cache fields where :meth:`caches` (``shared``: :meth:`shared`, when
        already known; ``sharing``: how many requests sent together are about its prompt)."""
        messages = self.render(request)
        body = self.request_body(messages)
        if not self.caches():
            return body
        return self.with_prompt_cache(body, messages, shared or self.shared(request), sharing)

    def with_prompt_cache(
        self,
        body: dict[str, Any],
        messages: list[dict[str, str]],
        shared: tuple[int, int],
        sharing: int,
    ) -> dict[str, Any]:
        """``body`` with the provider's cache fields: ``shared`` are the characters of the last
        message every request of the rubric shares and every request about its prompt
        shares (:meth:`rlaif.rubrics.Rubric.shared_prefixes`), ``sharing`` how many requests
        sent together are about this prompt."""
        return body

    def estimated_tokens(self, rendered: Any) -> tuple[int, int]:
        """Input tokens (characters / 4) and the output cap: the most a request may use."""
        output_cap = 1 if self.rubric.read == "label_probs" else self.cfg.max_tokens
        return sum(len(m["content"]) for m in rendered) // 4, output_cap

    @property
    def batch_discount(self) -> float:
        return self.batch.discount if self.batch.enabled else 1.0

    @property
    def provider_batches(self) -> bool:
        return self.batch.enabled

    # -- provider hooks -------------------------------------------------------------------
    def request_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The request body for one judgment, the same online and in a batch. Every field
        but the input, :data:`TRANSPORT_FIELDS` and :meth:`read_fields` is part of the cache
        key (:meth:`identity`), so a parameter added here keys new answers."""
        raise NotImplementedError

    def read_fields(self) -> dict[str, Any]:
        """The request fields the rubric's read mode fixes (label probabilities, a JSON
        schema): keyed through the rubric, not again as fields."""
        return {}

    def read_response(self, response: Any) -> Verdict:
        """The provider's parsed response as a verdict with usage, online or from a batch."""
        raise NotImplementedError

    def batch_client(self) -> Any:
        """The provider's batch API (``<provider>_batches.py`` beside the provider)."""
        raise NotImplementedError

    def _client(self) -> Any:
        raise NotImplementedError

    async def _call(self, client: Any, body: dict[str, Any]) -> Verdict:
        """Send one request body (:meth:`body`) and read its answer; no retries."""
        raise NotImplementedError

    # -- running --------------------------------------------------------------------------
    def run(self, requests: list[JudgeRequest], on_result: OnResult, budget: Budget) -> None:
        if not requests:
            return
        session = self._session or Session()
        try:
            session.runner.run(self._run(session, requests, on_result, budget))
        finally:
            if session is not self._session:
                session.close()

    def keep_open(self) -> None:
        if self._session is None:
            self._session = Session()
            # Closed when the judge goes (or the interpreter exits): the HTTP client's
            # connections are shut, not left for a garbage collector to complain about.
            weakref.finalize(self, self._session.close)

    async def _run(
        self, session: Session, requests: list[JudgeRequest], on_result: OnResult, budget: Budget
    ) -> None:
        client = session.client = session.client or self._client()
        # Requests are spaced evenly (a bucket of one), so no 60-second window ever holds more
        # than the limit; tokens may burst by one second's worth.
        rpm_limit, tpm_limit = self.cfg.requests_per_minute, self.cfg.tokens_per_minute
        rpm = AsyncLimiter(1, 60 / rpm_limit) if rpm_limit else None
        tpm = AsyncLimiter(tpm_limit / 60, 1) if tpm_limit else None
        bodies, groups = self.bodies(requests)
        order = CacheFirst(groups) if groups else None
        pending = iter(range(len(requests)))

        async def take() -> int | None:
            return await order.take() if order is not None else next(pending, None)

        async def answer(index: int, probe: bool = False) -> None:
            request = requests[index]
            verdict = await self._judge_one(client, request, bodies[index], rpm, tpm, probe=probe)
            budget.add(verdict.cost_usd)
            if order is not None:
                order.answered(index)
            on_result(index, verdict)

        async def worker() -> None:
            # All workers take from one order; the event loop is single-threaded, so each
            # request is taken exactly once.
            while budget.allows() and (index := await take()) is not None:
                await answer(index)

        workers: list[asyncio.Future] = []
        try:
            # One request alone first: a judge nothing answers for fails once, clearly,
            # instead of every request failing after its retries. Once per judge: a Ray actor
            # calls run for every batch, and a probe each time would halve its throughput.
            probing = budget.allows() and not self.probed
            if probing:
                await answer(await take(), probe=True)
                self.probed = True
            workers = [
                asyncio.ensure_future(worker())
                for _ in range(min(self.cfg.max_concurrency, len(requests) - probing))
            ]
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()

    async def _judge_one(
        self,
        client: Any,
        request: JudgeRequest,
        body: dict[str, Any],
        rpm: AsyncLimiter | None,
        tpm: AsyncLimiter | None,
        *,
        probe: bool = False,
    ) -> Verdict:
        tokens = sum(self.estimated_tokens(self.render(request))) if tpm else 0
        retrying = AsyncRetrying(
            retry=retry_if_exception(self.retryable),
            wait=self._wait,
            stop=stop_after_attempt(self.cfg.max_retries + 1),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if rpm:
                        await rpm.acquire()
                    if tpm:
                        await tpm.acquire(min(tokens, tpm.max_rate))
                    self.in_flight += 1
                    self.attempts += 1
                    try:
                        return await self._call(client, body)
                    finally:
                        self.in_flight -= 1
        except Exception as exc:
            if probe and self.unreachable(exc):
                raise FatalJudgeError(self._unreachable_message(exc)) from exc
            if not self.retryable(exc):
                fatal = self.fatal(exc)
                if fatal is not None:
                    raise fatal from exc
                return Verdict(status="error", raw_output="", error=describe_error(exc))
            return Verdict(
                status="error",
                raw_output="",
                error=f"gave up after {self.cfg.max_retries + 1} attempts: {describe_error(exc)}",
            )
        raise AssertionError("unreachable: tenacity either returns or raises")

    def fatal(self, exc: BaseException) -> FatalJudgeError | None:
        """The stage-stopping error for an HTTP answer every request would get (400, 401, 403,
        404), else None."""
        if status_of(exc) is not None and not self.retryable(exc):
            return FatalJudgeError(self._fatal_message(exc))
        return None

    def unreachable(self, exc: BaseException) -> bool:
        if not isinstance(exc, self.unreachable_errors):
            return False
        return not isinstance(exc, self.slow_errors) or connection_failure(exc) is not None

    def _unreachable_message(self, exc: BaseException) -> str:
        where = self.cfg.base_url or f"the {self.kind} API"
        return (
            f"judge '{self.name}': cannot reach {where} ({describe_error(exc)}, "
            f"{self.cfg.max_retries + 1} attempts); nothing else was sent. Is the server "
            f"running, and is base_url right? (judge '{self.name}'.base_url)"
        )

    def retryable(self, exc: BaseException) -> bool:
        """Can this failure succeed later: 429, 5xx, timeouts, dropped connections?"""
        status = status_of(exc)
        if status is not None:
            return status in RETRYABLE_STATUS or status >= 500
        return isinstance(
            exc, (TimeoutError, ConnectionError, json.JSONDecodeError, *self.transient_errors)
        )

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=0.5, max=30)(state)
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after(exc)
        return backoff if after is None else min(after, MAX_RETRY_AFTER_S) + backoff / 10

    def _fatal_message(self, exc: BaseException) -> str:
        where = self.cfg.base_url or f"the {self.kind} API"
        hint = {
            401: f"check the key in ${self.cfg.api_key_env}",
            403: f"the key in ${self.cfg.api_key_env} may lack access to this model",
            404: f"is model '{self.cfg.model}' served at {where}?",
        }.get(status_of(exc), "")
        return (
            f"judge '{self.name}': {where} answered {describe_error(exc)}; stopping the stage "
            f"(every request would fail the same way){'; ' + hint if hint else ''}"
        )


def with_usage(
    judge: ApiJudge,
    verdict: Verdict,
    input_tokens: int | None,
    output_tokens: int | None,
    cached_tokens: int | None = None,
    written_tokens: int | None = None,
) -> Verdict:
    """``verdict`` with its usage and cost. ``input_tokens`` counts every input token, those
    read from or written to the provider's cache included; what the cache saved against the
    same call at the full input price is kept beside the cost."""
    cost = judge.cost(input_tokens, output_tokens, cached_tokens, written_tokens)
    saved = None
    if cost is not None and (cached_tokens or written_tokens):
        saved = round(judge.cost(input_tokens, output_tokens) - cost, 9)
    return replace(
        verdict,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_tokens,
        cache_write_tokens=written_tokens,
        cost_usd=cost,
        cache_saved_usd=saved,
    )
