"""``rlaif serve-reward``: the pipeline's reward, or a trained reward model, over HTTP for
trainers that run elsewhere (OpenRLHF's remote reward URL, verl and OpenRLHF through
``rlaif/integrations/http_reward.py``).

``POST /get_reward`` takes OpenRLHF's body, ``{"query": [...], "prompts": [...], "labels":
[...]}`` (``query`` is the prompt and the response as the trainer decoded them, special tokens
kept; with ``prompts`` the response is what follows the prompt, without it what follows the
chat template's generation prompt, also where the trainer cut the prompt from the left), or
the plainer ``{"prompts": [...], "responses": [...], "labels": [...]}``, and answers
``{"rewards": [...], "scores": [...], "extra_logs": {...}}``. Before judging, the response
loses the end-of-turn marker and every other special token of the policy's tokenizer (a
finished answer must not score differently from the same words cut short), and a templated
prompt is turned back into the user's text.

The rewards are the pipeline's ``reward:`` (:class:`rlaif.rewards.RewardService`, what the
in-process adapters use: same judges, rubrics, orders, store and budget, so a response judged
before is free); a comparing judge scores P(response beats the label, the prompt's reference
answer), so it needs labels; a pointwise or checklist judge scores each response alone. A
reward model scores each (prompt, response) alone.

Served by Starlette on uvicorn: requests are read concurrently, and those that arrive while a
batch is being scored are scored together as the next batch; a large request is split so it
takes its share of each batch, not every batch. Each request is checked alone before it joins
a batch (JSON of at most ``MAX_DEPTH`` levels, valid Unicode, the fields' types), so a bad one
gets its own 400 and never touches another client's; a batch that fails is scored again
request by request, so only the request at fault fails.

An answer no judge could answer for (the judge failed, is down or the budget is spent) is the
trainer's to see, never a silent number: by default (``on_failure="error"``) its request is
answered 502 (503 for the budget) with ``errors`` saying why, and ``rewards`` holding ``null``
there; ``"null"`` answers 200 with those ``null`` rewards and ``errors``; ``"neutral"`` answers
200 with the scale's middle (0.5 for a comparison).

What guards it: a body over ``--max-body-mb`` is refused before it is read (413); with
``--token-env`` every call must carry ``Authorization: Bearer <token>`` (any case of
``Bearer``; compared in constant time; 401 otherwise), and without one it listens only on a
loopback address unless started ``--insecure``; the body must be declared
``application/json`` (415) and a browser's request from another origin is refused (403), so a
web page cannot spend the judges' budget; slow and piled-up connections are cut off by
:mod:`rlaif.ops.serving`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from rlaif.chat import Prompt, conversation_error, plain
from rlaif.config import PipelineConfig
from rlaif.errors import ConfigError, RlaifError
from rlaif.judging.reward import NEUTRAL, Scored
from rlaif.ops.serving import AppServer, BodyError, Limits, is_loopback, read_body
from rlaif.rewards.mixed import Item, ItemReward, JudgeScorer, flat_account
from rlaif.rewards.service import RewardService
from rlaif.rewards.turns import TurnText

log = logging.getLogger(__name__)
MAX_BATCH = 512
"""Requests' items scored in one call at most; the rest wait for the next batch."""
MAX_DEPTH = 8
"""JSON nesting a body may have (a conversation's message is 4 levels down)."""
LINGER_S = 0.005
"""How long the first request after a quiet spell waits for the ones sent with it."""
OnFailure = Literal["error", "null", "neutral"]


class BadRequest(RlaifError):
    """A request the server answers with 400 and this message."""


class Message(BaseModel):
    """One turn of a conversation a prompt is."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: str
    content: str


class RewardRequest(BaseModel):
    """The body of ``POST /get_reward``: typed, so a list where a string belongs is a 400."""

    model_config = ConfigDict(extra="ignore", strict=True)

    prompts: list[str | list[Message]] | None = None
    """Prompt texts (templated or not), or conversations ending with the user's turn."""
    query: list[str] | None = None
    responses: list[str] | None = None
    labels: list[str | None] | None = None


class Rewards:
    """What the server scores with: a reward model folder, or the pipeline's reward (its
    ``reward:`` components over its judges, through :class:`RewardService`: the HTTP face of
    the same reward the trainers' adapters use in process)."""

    def __init__(self, cfg: PipelineConfig, reward_model: Path | None = None):
        from rlaif.models.loading import load_tokenizer, resolve_model

        self.service: RewardService | None = None
        self.lanes = 1
        """Batches scored side by side (the reward service's lanes)."""
        self.neutral = NEUTRAL
        """The reward of an answer no judge answered for, where the trainer wants one."""
        if reward_model is not None:
            from rlaif.training.reward_model import RewardScorer

            scorer = RewardScorer(reward_model, system_prompt=cfg.sample.system_prompt)
            self.needs_labels = False
            self.text = TurnText(load_tokenizer(reward_model))
            self._score = lambda prompts, responses, _labels: (
                [Scored(float(r)) for r in scorer.score(prompts, responses)],
                {},
            )
            return
        if not cfg.judge.judges:
            raise ConfigError("serve-reward: the pipeline names no judge")
        self.text = TurnText(load_tokenizer(resolve_model(cfg.model, field="model")))
        # the server answers a failed judgment as --on-failure says: the reward leaves it None
        cfg = cfg.model_copy(
            update={"reward": cfg.reward.model_copy(update={"on_failure": "null"})}
        )
        self.service = RewardService(cfg)
        self.lanes = self.service.lanes
        scorers = self.service.reward.scorers.values()
        judged = [s for s in scorers if isinstance(s, JudgeScorer)]
        self.needs_labels = any(s.mode in ("pairwise", "listwise") for s in judged)
        if judged:
            self.neutral = judged[0].neutral()
        service = self.service

        def score(prompts, responses, labels):
            items = [
                Item(p, r, label) for p, r, label in zip(prompts, responses, labels, strict=True)
            ]
            got = service.score_now(items)
            return [_scored(r) for r in got], flat_account(service.steps[-1])

        self._score = score

    def read(self, body: RewardRequest) -> list[tuple[Prompt, str, str | None]]:
        """(user text, response, label) per item, or a :class:`BadRequest` naming what is
        wrong."""
        if body.query is not None:
            if body.prompts is not None:
                if len(body.query) != len(body.prompts):
                    raise BadRequest("'query': one text (prompt + response) per prompt")
                if not all(isinstance(p, str) for p in body.prompts):
                    raise BadRequest(
                        "'prompts' beside 'query' are the texts the queries start with"
                    )
                pairs = [
                    (p, self.text.response(q, p))
                    for p, q in zip(body.prompts, body.query, strict=True)
                ]
            else:
                try:
                    pairs = [self.text.split(q) for q in body.query]
                except ValueError as exc:
                    raise BadRequest(str(exc)) from None
        elif body.prompts is not None and body.responses is not None:
            if len(body.responses) != len(body.prompts):
                raise BadRequest("'responses': one response per prompt")
            pairs = list(zip(body.prompts, body.responses, strict=True))
        else:
            raise BadRequest(
                "send 'query' (with or without 'prompts'), or 'prompts' and 'responses'"
            )
        if not pairs:
            raise BadRequest("nothing to score: the lists are empty")
        labels = body.labels if body.labels is not None else [None] * len(pairs)
        if len(labels) != len(pairs):
            raise BadRequest("'labels': one label per prompt")
        if self.needs_labels and not all(labels):
            raise BadRequest(
                "'labels': the judges compare each response with its label (the prompt's "
                "reference answer), so every prompt needs one; or use a pointwise rubric, or "
                "serve a reward model (--reward-model)"
            )
        return [
            (self._prompt(p), self.text.clean(r), label)
            for (p, r), label in zip(pairs, labels, strict=True)
        ]

    def _prompt(self, prompt: str | list[Message]) -> Prompt:
        """A prompt as the judges see it: a text's user words (or its conversation), or a
        conversation sent as messages, checked."""
        if isinstance(prompt, str):
            return self.text.prompt(prompt)
        turns = [m.model_dump() for m in prompt]
        problem = conversation_error(turns)
        if problem is not None:
            raise BadRequest(f"'prompts': {problem}")
        return plain(turns)

    def score(self, items: list[tuple[Prompt, str, str | None]]) -> tuple[list[Scored], dict]:
        """Rewards (or why there is none) for (prompt, response, label) items, and what
        judging them cost."""
        prompts, responses, labels = (list(column) for column in zip(*items, strict=True))
        return self._score(prompts, responses, labels)

    def close(self) -> None:
        if self.service is not None:
            self.service.close()


def _scored(reward: ItemReward) -> Scored:
    if reward.total is not None:
        return Scored(reward.total)
    reason = next((r for r in reward.reasons.values() if r), "no judgment was made")
    return Scored(None, reward.failed or "error", reason)


@dataclass
class _Job:
    """One request's items, scored a share at a time."""

    items: list[tuple[Prompt, str, str | None]]
    done: asyncio.Future
    taken: int = 0
    scored: dict[int, Scored] = field(default_factory=dict)
    """By item: shares may be scored side by side and finish in any order."""
    extra: dict = field(default_factory=dict)


class _Batcher:
    """Scores what concurrent requests sent as few batches: while one batch is scored (in a
    worker thread, the event loop still reading requests), the next one gathers. Each waiting
    request gets an equal share of a batch, so a huge one is scored over several batches
    while small ones go through in the next. A batch that raises is scored again request by
    request, so the error reaches only the request that caused it."""

    def __init__(self, rewards: Rewards, max_batch: int = MAX_BATCH):
        self.rewards = rewards
        self.max_batch = max_batch
        self.jobs: deque[_Job] = deque()
        self.wake: asyncio.Event | None = None
        self.batches = 0

    async def score(self, items: list[tuple[Prompt, str, str | None]]) -> tuple[list[Scored], dict]:
        loop = asyncio.get_running_loop()
        if self.wake is None:
            self.wake = asyncio.Event()
            loop.create_task(self._run())
        job = _Job(items, loop.create_future())
        self.jobs.append(job)
        self.wake.set()
        return await job.done

    def _take(self) -> list[tuple[_Job, int, int]]:
        """(job, start, end) shares of the next batch: every waiting job its share in turn."""
        shares: list[tuple[_Job, int, int]] = []
        room = self.max_batch
        while room and any(j.taken < len(j.items) for j in self.jobs):
            open_jobs = [j for j in self.jobs if j.taken < len(j.items)]
            each = max(1, room // len(open_jobs))
            for job in open_jobs:
                n = min(each, len(job.items) - job.taken, room)
                if n:
                    shares.append((job, job.taken, job.taken + n))
                    job.taken += n
                    room -= n
        return shares

    async def _run(self) -> None:
        """Batches on as many lanes as the reward has (each waits on its judges while the
        next gathers): a lane first, then what arrived meanwhile."""
        assert self.wake is not None
        lanes = asyncio.Semaphore(getattr(self.rewards, "lanes", 1))
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            await asyncio.sleep(LINGER_S)  # requests sent together arrive a little apart
            self.wake.clear()
            while True:
                await lanes.acquire()
                shares = self._take()
                if not shares:
                    lanes.release()
                    break
                self.batches += 1
                loop.create_task(self._batch(shares, lanes))

    async def _batch(self, shares: list[tuple[_Job, int, int]], lanes: asyncio.Semaphore) -> None:
        try:
            await self._score(shares)
        finally:
            lanes.release()
            for job in list(self.jobs):
                if job.done.done():
                    self.jobs.remove(job)
                elif len(job.scored) == len(job.items):
                    ordered = [job.scored[n] for n in range(len(job.items))]
                    job.done.set_result((ordered, job.extra))
                    self.jobs.remove(job)

    async def _score(self, shares: list[tuple[_Job, int, int]]) -> None:
        items = [item for job, start, end in shares for item in job.items[start:end]]
        try:
            scored, extra = await asyncio.to_thread(self.rewards.score, items)
        except Exception as exc:
            if len(shares) == 1:
                job = shares[0][0]
                if not job.done.done():
                    job.done.set_exception(exc)
                return
            for share in shares:  # which request is at fault: each alone
                await self._score([share])
            return
        at = 0
        for job, start, end in shares:
            job.scored.update(zip(range(start, end), scored[at : at + end - start], strict=True))
            job.extra = extra
            at += end - start


def check_json(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`BadRequest` for JSON nested deeper than ``max_depth`` or holding a
    string that is not valid Unicode (a lone surrogate such as ``"\\ud800"``: valid JSON,
    but no text), naming where."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > max_depth:
            raise BadRequest(f"malformed body: nested deeper than {max_depth} levels")
        if isinstance(node, str):
            if not node.isascii():
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise BadRequest(
                        f"'{where.lstrip('.')}': not valid Unicode (character "
                        f"{node[exc.start]!r} at {exc.start} is half of a surrogate pair)"
                    ) from None
        elif isinstance(node, dict):
            stack += [(v, f"{where}.{k}", depth + 1) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(v, f"{where}.{n}", depth + 1) for n, v in enumerate(node)]


def _authorized(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, the scheme in any case, compared in constant time."""
    scheme, _, given = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _cross_site(request: Any) -> bool:
    """A browser's request from a page of another origin (what a form or a fetch from any
    web site sends): its ``Origin`` is not this server's address."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site") == "cross-site"
    return origin.rstrip("/") not in (f"http://{request.headers.get('host')}",)


def make_app(
    rewards: Rewards,
    *,
    token: str | None = None,
    max_body_mb: float = 16.0,
    on_failure: OnFailure = "error",
):
    """The Starlette app: ``POST /get_reward`` and ``GET /health``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    batcher = _Batcher(rewards)
    limit = int(max_body_mb * (1 << 20))

    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "batches": batcher.batches})

    async def get_reward(request: Request) -> JSONResponse:
        if _cross_site(request):
            return refuse(403, "cross-site request refused (a browser page of another origin)")
        if token is not None and not _authorized(request.headers.get("authorization"), token):
            return refuse(401, "missing or wrong bearer token")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return refuse(415, f"send the body as Content-Type: application/json (got {kind!r})")
        try:
            raw = await read_body(request, limit)
        except BodyError as exc:
            return exc.response()
        try:
            try:
                parsed = json.loads(raw or b"{}")
            except RecursionError:
                raise BadRequest(f"malformed body: nested deeper than {MAX_DEPTH} levels") from None
            except ValueError as exc:
                raise BadRequest(f"malformed body (not JSON: {exc})") from None
            check_json(parsed)
            body = RewardRequest.model_validate(parsed)
            items = rewards.read(body)
        except ValidationError as exc:
            where = ", ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            return refuse(400, f"malformed body ({where})")
        except (BadRequest, ValueError) as exc:
            return refuse(400, str(exc))
        try:
            scored, extra = await batcher.score(items)
        except RlaifError as exc:  # e.g. the judge is down: it would fail every request alike
            reason = f"the judges failed: {exc}"
            scored, extra = [Scored(None, "error", reason)] * len(items), {}
        except Exception as exc:
            log.exception("serve-reward: scoring failed")
            return refuse(500, f"scoring failed: {type(exc).__name__}: {exc}")
        return _answer(scored, extra, on_failure, rewards.neutral)

    app = Starlette(
        routes=[
            Route("/get_reward", get_reward, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    app.state.batcher = batcher
    return app


def _answer(scored: list[Scored], extra: dict, on_failure: OnFailure, neutral: float):
    """The response to a scored request, its failed answers as ``on_failure`` says."""
    from starlette.responses import JSONResponse

    failed = [s for s in scored if s.value is None]
    errors = [s.reason for s in scored]
    if failed and on_failure == "error":
        budget = all(s.status == "skipped" for s in failed)
        return JSONResponse(
            {
                "error": f"{len(failed)} of {len(scored)} answer(s) got no judgment: "
                f"{failed[0].reason}",
                "rewards": [s.value for s in scored],
                "errors": errors,
            },
            status_code=503 if budget else 502,
        )
    fill = neutral if on_failure == "neutral" else None
    rewards = [fill if s.value is None else s.value for s in scored]
    body: dict[str, Any] = {"rewards": rewards, "scores": rewards, "extra_logs": extra}
    if failed:
        body["errors"] = errors
    return JSONResponse(body)


class RewardServer(AppServer):
    """``uvicorn`` serving :func:`make_app`; ``start()`` runs it in a thread (tests, notebooks),
    ``serve()`` in the foreground (the CLI)."""

    def __init__(
        self,
        rewards: Rewards,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        token_env: str | None = None,
        max_body_mb: float = 16.0,
        on_failure: OnFailure = "error",
        insecure: bool = False,
        limits: Limits | None = None,
    ):
        token = None
        if token_env is not None:
            token = os.environ.get(token_env)
            if not token:
                raise ConfigError(f"--token-env: the environment variable {token_env} is not set")
        if token is None and not is_loopback(host):
            if not insecure:
                raise ConfigError(
                    f"--host {host}: without a token any machine that reaches it could spend "
                    "the judges' budget; start it with --token-env NAME (and give the token to "
                    "the trainer), or --insecure to serve without one"
                )
            log.warning(
                "serve-reward: listening on %s without a token (--insecure): anyone who "
                "reaches it spends the judges' budget",
                host,
            )
        app = make_app(rewards, token=token, max_body_mb=max_body_mb, on_failure=on_failure)
        super().__init__(app, host, port, what="serve-reward", limits=limits)
