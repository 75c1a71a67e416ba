"""``rlaif serve-reward``: the pipeline's judges, or a trained reward model, as an HTTP reward
for trainers that run elsewhere (OpenRLHF's remote reward URL, verl through
``rlaif/integrations/verl_reward.py``).

``POST /get_reward`` takes OpenRLHF's body, ``{"query": [...], "prompts": [...], "labels":
[...]}`` (``query`` is the prompt and the response as the trainer decoded them, special tokens
kept; with ``prompts`` the response is what follows the prompt, without it what follows the
chat template's generation prompt), or the plainer ``{"prompts": [...], "responses": [...],
"labels": [...]}``, and answers ``{"rewards": [...], "scores": [...], "extra_logs": {...}}``.
Before judging, the response loses the end-of-turn marker and every other special token of
the policy's tokenizer (a finished answer must not score differently from the same words cut
short), and a templated prompt is turned back into the user's text.

Judged rewards are GRPO's: P(response beats the label, the prompt's reference answer) through
the judging service (same backends, rubrics, orders, store and budget), so a response judged
before is free; a pointwise rubric scores each response alone and needs no label. A reward
model scores each (prompt, response) alone.

Served by Starlette on uvicorn: requests are read concurrently, and those that arrive while a
batch is being scored are scored together as the next batch. A body over ``--max-body-mb`` is
refused (413), a malformed one gets a 400 naming the field, and with ``--token-env`` every call
must carry ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rlaif.chat import ROLES, Prompt, conversation_error, plain
from rlaif.config import PipelineConfig
from rlaif.errors import ConfigError, RlaifError
from rlaif.judges import Budget
from rlaif.judging.store import JudgmentStore
from rlaif.ops.serving import AppServer

log = logging.getLogger(__name__)
MAX_BATCH = 512
"""Requests' items scored in one call at most; the rest wait for the next batch."""


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


class TurnText:
    """Reading what a trainer sends with the policy's chat template: the response without
    special tokens, the user's text inside a templated prompt, and the split of a query that
    comes without its prompt."""

    MARK = "\u2063rlaif-user-text\u2063"
    TURNS = tuple(f"\u2063rlaif-turn-{n}\u2063" for n in range(3))

    def __init__(self, tokenizer: Any):
        special = {t for t in tokenizer.all_special_tokens if t} | {tokenizer.eos_token or ""}
        self.special = sorted(special - {""}, key=len, reverse=True)
        self.before = self.after = ""
        if getattr(tokenizer, "chat_template", None):
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": self.MARK}], tokenize=False, add_generation_prompt=True
            )
            self.before, _, self.after = rendered.partition(self.MARK)
        # what opens the user's turn: ``before`` from its last special token on
        cuts = [self.before.rfind(t) for t in self.special if t in self.before]
        self.user_start = self.before[max(cuts) :] if cuts else ""
        # what the template puts between a user's turn and the answer, and between an answer
        # and the next user's turn: how a templated conversation splits back into its turns
        self.to_answer = self.to_user = ""
        if getattr(tokenizer, "chat_template", None):
            probe = tokenizer.apply_chat_template(
                [{"role": r, "content": m} for r, m in zip(ROLES * 2, self.TURNS, strict=False)],
                tokenize=False,
                add_generation_prompt=True,
            )
            at = [probe.find(m) for m in self.TURNS]
            if -1 not in at and at == sorted(at):
                self.to_answer = probe[at[0] + len(self.TURNS[0]) : at[1]]
                self.to_user = probe[at[1] + len(self.TURNS[1]) : at[2]]

    def clean(self, text: str) -> str:
        for token in self.special:
            text = text.replace(token, "")
        return text.strip()

    def prompt(self, prompt: str) -> Prompt:
        """What the user said in a prompt the template rendered: their words, or the
        conversation when it holds earlier turns (the trainer's system prompt left out); any
        other prompt as it is."""
        if not (self.after and prompt.endswith(self.after)):
            return self.clean(prompt)
        prompt = prompt[: -len(self.after)]
        if not (self.user_start and self.user_start in prompt):
            return self.clean(prompt)
        first = prompt.find(self.user_start) + len(self.user_start)
        last = prompt.rfind(self.user_start) + len(self.user_start)
        if first == last or not (self.to_answer and self.to_user):
            return self.clean(prompt[last:])
        turns, rest = [], prompt[first:]
        for role in itertools.cycle(ROLES):
            end = self.to_answer if role == "user" else self.to_user
            content, found, rest = rest.partition(end)
            turns.append({"role": role, "content": self.clean(content)})
            if not found:
                break
        if turns[-1]["role"] != "user" or conversation_error(turns) is not None:
            return self.clean(prompt[last:])  # a turn the template wrote otherwise
        return turns

    def split(self, query: str) -> tuple[str, str]:
        """(prompt, response) of a query sent without its prompt."""
        if not self.after or self.after not in query:
            raise BadRequest(
                "'query' without 'prompts': the query does not hold the chat template's "
                f"generation prompt {self.after!r}, so the response cannot be told from the prompt"
            )
        at = query.rfind(self.after)
        return query[: at + len(self.after)], query[at + len(self.after) :]


class Rewards:
    """What the server scores with: a reward model folder, or the pipeline's judges."""

    def __init__(self, cfg: PipelineConfig, reward_model: Path | None = None):
        from rlaif.models.loading import load_tokenizer, resolve_model

        self.store = None
        self.steps: list[dict[str, Any]] = []
        if reward_model is not None:
            from rlaif.training.reward_model import RewardScorer

            scorer = RewardScorer(reward_model, system_prompt=cfg.sample.system_prompt)
            self.needs_labels = False
            self.text = TurnText(load_tokenizer(reward_model))
            self._score = lambda prompts, responses, _labels: scorer.score(prompts, responses)
            return
        from rlaif.judging.reward import JudgeReward, PointwiseReward
        from rlaif.rubrics import load_rubric

        self.text = TurnText(load_tokenizer(resolve_model(cfg.model, field="model")))
        if not cfg.judge.judges:
            raise ConfigError("serve-reward: the pipeline names no judge")
        self.store = JudgmentStore(cfg.judgment_store_path())
        budget = Budget(cfg.judge.max_cost_usd)
        first = cfg.judge.judges[0]
        rubric = getattr(first, "rubric", None)
        mode = load_rubric(rubric).mode if rubric is not None else first.mode
        self.needs_labels = mode not in ("pointwise", "checklist")
        if self.needs_labels:
            judged = JudgeReward(cfg.judge, self.store, budget)
            self.steps = judged.steps
            self._score = lambda prompts, responses, labels: judged(
                prompts=prompts,
                completions=responses,
                prompt_text=prompts,
                baselines=[[label] for label in labels],
            )
        else:
            pointwise = PointwiseReward(cfg.judge, self.store, budget)
            self.steps = pointwise.steps
            self._score = lambda prompts, responses, _labels: pointwise(prompts, responses)

    def read(self, body: RewardRequest) -> list[tuple[str, str, str | None]]:
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
                    (p, q[len(p) :] if q.startswith(p) else q)
                    for p, q in zip(body.prompts, body.query, strict=True)
                ]
            else:
                pairs = [self.text.split(q) for q in body.query]
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

    def score(self, items: list[tuple[str, str, str | None]]) -> tuple[list[float], dict]:
        """Rewards for (prompt, response, label) items, and what judging them cost."""
        prompts, responses, labels = (list(column) for column in zip(*items, strict=True))
        rewards = [float(r) for r in self._score(prompts, responses, labels)]
        extra = dict(self.steps[-1]) if self.steps else {}
        extra.pop("step", None)
        return rewards, extra

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class _Batcher:
    """Scores what concurrent requests sent as few batches: while one batch is scored (in a
    worker thread, the event loop still reading requests), the next one gathers."""

    def __init__(self, rewards: Rewards):
        self.rewards = rewards
        self.queue: asyncio.Queue | None = None
        self.batches = 0

    async def score(self, items: list[tuple[str, str, str | None]]) -> tuple[list[float], dict]:
        if self.queue is None:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._run())
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((items, done))
        return await done

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            waiting = [await self.queue.get()]
            size = len(waiting[0][0])
            while not self.queue.empty() and size < MAX_BATCH:
                waiting.append(self.queue.get_nowait())
                size += len(waiting[-1][0])
            items = [item for batch, _ in waiting for item in batch]
            self.batches += 1
            try:
                rewards, extra = await asyncio.to_thread(self.rewards.score, items)
            except Exception as exc:  # each request waiting gets the failure, the server goes on
                for _, done in waiting:
                    done.set_exception(exc)
                continue
            at = 0
            for batch, done in waiting:
                done.set_result((rewards[at : at + len(batch)], extra))
                at += len(batch)


def make_app(rewards: Rewards, *, token: str | None = None, max_body_mb: float = 16.0):
    """The Starlette app: ``POST /get_reward`` and ``GET /health``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    batcher = _Batcher(rewards)
    limit = int(max_body_mb * (1 << 20))

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "batches": batcher.batches})

    async def get_reward(request: Request) -> JSONResponse:
        if token is not None and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        if int(request.headers.get("content-length") or 0) > limit:
            return JSONResponse({"error": f"body over {max_body_mb:g} MB"}, status_code=413)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                return JSONResponse({"error": f"body over {max_body_mb:g} MB"}, status_code=413)
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError as exc:
            return JSONResponse({"error": f"malformed body (not JSON: {exc})"}, status_code=400)
        try:
            body = RewardRequest.model_validate(parsed)
            items = rewards.read(body)
        except ValidationError as exc:
            where = ", ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]
            )
            return JSONResponse({"error": f"malformed body ({where})"}, status_code=400)
        except (BadRequest, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            scores, extra = await batcher.score(items)
        except RlaifError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        return JSONResponse({"rewards": scores, "scores": scores, "extra_logs": extra})

    app = Starlette(
        routes=[
            Route("/get_reward", get_reward, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    app.state.batcher = batcher
    return app


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
    ):
        token = None
        if token_env is not None:
            token = os.environ.get(token_env)
            if not token:
                raise ConfigError(f"--token-env: the environment variable {token_env} is not set")
        app = make_app(rewards, token=token, max_body_mb=max_body_mb)
        super().__init__(app, host, port, what="serve-reward")
