"""``rlaif serve-reward``: the pipeline's judges, or a trained reward model, as an HTTP reward
for trainers that run elsewhere (OpenRLHF's ``--remote_rm_url``, verl through
``rlaif/integrations/verl_reward.py``).

``POST /get_reward`` takes OpenRLHF's body, ``{"query": [...], "prompts": [...], "labels":
[...]}`` (``query`` is prompt + response; the response is what follows the prompt), or the
plainer ``{"prompts": [...], "responses": [...], "labels": [...]}``, and answers ``{"rewards":
[...], "scores": [...], "extra_logs": {...}}``. Judged rewards are GRPO's: P(response beats
the label, the prompt's reference answer), through the judge stage (same backends, rubrics,
orders, store and budget), so a response judged before is free. A reward model scores each
(prompt, response) alone. One request is scored at a time: each is a batch already.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rlaif.config import PipelineConfig
from rlaif.errors import RlaifError
from rlaif.judges import Budget
from rlaif.judging.store import JudgmentStore

log = logging.getLogger(__name__)


class BadRequest(RlaifError):
    """A request the server answers with 400 and this message."""


class Rewards:
    """What the server scores with: a reward model folder, or the pipeline's judges."""

    def __init__(self, cfg: PipelineConfig, reward_model: Path | None = None):
        self.lock = threading.Lock()
        self.needs_labels = reward_model is None
        if reward_model is not None:
            from rlaif.training.reward_model import RewardScorer

            scorer = RewardScorer(reward_model, system_prompt=cfg.sample.system_prompt)
            self._score = lambda prompts, responses, _labels: scorer.score(prompts, responses)
            self.store = None
            return
        from rlaif.judging.reward import JudgeReward

        self.store = JudgmentStore(cfg.judgment_store_path())
        judged = JudgeReward(cfg.judge, self.store, Budget(cfg.judge.max_cost_usd))
        self.steps = judged.steps
        self._score = lambda prompts, responses, labels: judged(
            prompts=prompts,
            completions=responses,
            prompt_text=prompts,
            baselines=[[label] for label in labels],
        )

    def score(self, body: dict[str, Any]) -> dict[str, Any]:
        prompts, responses, labels = _read(body, self.needs_labels)
        with self.lock:
            rewards = [float(r) for r in self._score(prompts, responses, labels)]
            extra = dict(self.steps[-1]) if self.store is not None else {}
        extra.pop("step", None)
        return {"rewards": rewards, "scores": rewards, "extra_logs": extra}

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _read(body: dict[str, Any], needs_labels: bool) -> tuple[list, list, list]:
    """(prompts, responses, labels) from either body, or a :class:`BadRequest` naming what
    is wrong."""
    prompts = body.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise BadRequest("'prompts': a non-empty list of prompts is required")
    if "responses" in body:
        responses = body["responses"]
    elif "query" in body:
        queries = body["query"]
        if not isinstance(queries, list) or len(queries) != len(prompts):
            raise BadRequest("'query': one text (prompt + response) per prompt")
        pairs = zip(prompts, queries, strict=True)
        responses = [q[len(p) :] if q.startswith(p) else q for p, q in pairs]
    else:
        raise BadRequest("either 'query' (prompt + response) or 'responses' is required")
    if not isinstance(responses, list) or len(responses) != len(prompts):
        raise BadRequest("'responses': one response per prompt")
    labels = body.get("labels") or [None] * len(prompts)
    if len(labels) != len(prompts):
        raise BadRequest("'labels': one label per prompt")
    if needs_labels and not all(isinstance(label, str) and label for label in labels):
        raise BadRequest(
            "'labels': the judges compare each response with its label (the prompt's reference "
            "answer), so every prompt needs one; or serve a reward model (--reward-model)"
        )
    return prompts, responses, labels


def make_server(rewards: Rewards, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """The HTTP server (``serve_forever`` it); port 0 picks a free one."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": f"no {self.path}; POST /get_reward"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/get_reward":
                self._send(404, {"error": f"no {self.path}; POST /get_reward"})
                return
            try:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                self._send(200, rewards.score(body))
            except (BadRequest, json.JSONDecodeError, ValueError) as exc:
                self._send(400, {"error": str(exc)})
            except RlaifError as exc:
                self._send(500, {"error": str(exc)})

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.info("serve-reward: " + format, *args)

    return ThreadingHTTPServer((host, port), Handler)
