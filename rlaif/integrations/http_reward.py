"""Rewards from ``rlaif serve-reward`` for verl and OpenRLHF, with the standard library only,
so the trainers' workers need not install rlaif. ``rlaif export`` copies this file beside the
data as ``rlaif_http_reward.py``.

- **verl** (0.9: its reward loop awaits an async ``compute_score``)::

      reward.custom_reward_function.path=rlaif_http_reward.py
      reward.custom_reward_function.name=compute_score

  Every answer verl awaits at once is gathered for ``LINGER_S`` and sent as one request, over
  a connection kept open, so the server judges them as one batch. verl's ``batch`` manager
  takes ``compute_score_batch`` (one request a batch); a caller that needs a plain function
  (verl's older per-item manager) ``compute_score_sync`` (one request an answer).
- **OpenRLHF** (``--reward.remote_url rlaif_http_reward.py``): ``reward_func(queries,
  prompts, labels)``, which OpenRLHF calls in a worker thread per rollout; it sends
  ``RLAIF_REWARD_TOKEN`` as a bearer token, which OpenRLHF's own HTTP client cannot.

The server's address is ``RLAIF_REWARD_URL`` (``http://host:port``; default
``http://127.0.0.1:8765``), its token ``RLAIF_REWARD_TOKEN``, the timeout of one request
``RLAIF_REWARD_TIMEOUT`` (seconds, default 600). The prompt is ``extra_info["question"]`` (a
text, or a conversation's messages) and the label ``ground_truth``, as ``rlaif export --format
verl`` writes them. An answer the server could not score (its judge failed, the budget is
spent) raises with the server's reason, so the trainer's step fails instead of training on a
made-up reward.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import threading
import urllib.parse
from typing import Any

LINGER_S = 0.01
"""How long an async call waits for others to share its request."""
DEFAULT_URL = "http://127.0.0.1:8765"


class RewardError(RuntimeError):
    """The server refused a request or could not score an answer; the message is its reason."""


def base_url(raw: str) -> str:
    """The server's address from what a user wrote: ``http(s)://host:port``, with any trailing
    ``/`` or ``/get_reward`` dropped; a bare ``host:port`` is refused (it would be read as a
    scheme)."""
    url = raw.strip().rstrip("/")
    if url.endswith("/get_reward"):
        url = url[: -len("/get_reward")]
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"reward URL {raw!r}: give the server's address as http://host:port (as "
            "`rlaif serve-reward` prints it)"
        )
    return url


class Client:
    """``POST /get_reward`` over a connection kept open per thread."""

    def __init__(self, url: str | None = None, token: str | None = None):
        self.url = base_url(url or os.environ.get("RLAIF_REWARD_URL") or DEFAULT_URL)
        self.token = token if token is not None else os.environ.get("RLAIF_REWARD_TOKEN")
        self.timeout = float(os.environ.get("RLAIF_REWARD_TIMEOUT", "600"))
        parts = urllib.parse.urlsplit(self.url)
        self._https = parts.scheme == "https"
        self._host = parts.netloc
        self._path = (parts.path or "") + "/get_reward"
        self._local = threading.local()
        self._batches: dict[int, _Gather] = {}
        self.settings: tuple[str | None, str | None] = (None, None)

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = kind(self._host, timeout=self.timeout)
        return conn

    def post(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The server's status and answer to ``body``; a connection the server closed while
        idle is opened again once."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", self._path, data, headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {"error": raw[:200].decode(errors="replace")}
        return response.status, answer

    def rewards(self, body: dict[str, Any]) -> list[float]:
        """Every answer's reward, or :class:`RewardError` with the server's reason."""
        status, answer = self.post(body)
        values = answer.get("rewards")
        if status != 200 or not isinstance(values, list) or None in values:
            raise RewardError(f"rlaif serve-reward answered {status}: {_reason(answer)}")
        return [float(v) for v in values]

    async def reward(self, prompt: Any, response: str, label: Any) -> float:
        """One answer's reward, sent in one request with the others awaited at the same time
        on this event loop."""
        loop = asyncio.get_running_loop()
        gather = self._batches.get(id(loop))
        if gather is None or gather.sent:
            gather = self._batches[id(loop)] = _Gather(self, loop)
        return await gather.add(prompt, response, label)


class _Gather:
    """The answers awaited on one event loop within ``LINGER_S`` of the first, sent as one
    request (in a thread, so the loop keeps running)."""

    def __init__(self, client: Client, loop: asyncio.AbstractEventLoop):
        self.client, self.loop = client, loop
        self.items: list[tuple[Any, str, Any]] = []
        self.waiting: list[asyncio.Future] = []
        self.sent = False
        loop.call_later(LINGER_S, lambda: loop.create_task(self.send()))

    def add(self, prompt: Any, response: str, label: Any) -> asyncio.Future:
        done = self.loop.create_future()
        self.items.append((prompt, response, label))
        self.waiting.append(done)
        return done

    async def send(self) -> None:
        self.sent = True
        body = {
            "prompts": [p for p, _, _ in self.items],
            "responses": [r for _, r, _ in self.items],
            "labels": [label or None for _, _, label in self.items],
        }
        try:
            status, answer = await asyncio.to_thread(self.client.post, body)
        except Exception as exc:
            for done in self.waiting:
                done.set_exception(RewardError(f"rlaif serve-reward unreachable: {exc}"))
            return
        values = answer.get("rewards")
        if not isinstance(values, list) or len(values) != len(self.waiting):
            error = RewardError(f"rlaif serve-reward answered {status}: {_reason(answer)}")
            for done in self.waiting:
                done.set_exception(error)
            return
        errors = answer.get("errors") or [None] * len(values)
        for done, value, why in zip(self.waiting, values, errors, strict=True):
            if value is None:
                done.set_exception(RewardError(f"rlaif serve-reward: no score ({why})"))
            else:
                done.set_result(float(value))


def _reason(answer: dict[str, Any]) -> str:
    return str(answer.get("error") or answer)[:500]


_client: Client | None = None


def client() -> Client:
    """The client for ``RLAIF_REWARD_URL`` and ``RLAIF_REWARD_TOKEN`` as they are now."""
    global _client
    wanted = (os.environ.get("RLAIF_REWARD_URL"), os.environ.get("RLAIF_REWARD_TOKEN"))
    if _client is None or _client.settings != wanted:
        _client = Client()
        _client.settings = wanted
    return _client


def _question(extra_info: dict | None) -> Any:
    info = extra_info or {}
    if "question" not in info:
        raise RewardError(
            "extra_info has no 'question' (the prompt the judges see); export the data with "
            "`rlaif export --format verl`, or add it to extra_info"
        )
    return info["question"]


async def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **_: Any
) -> float:
    """verl's reward loop: one answer, sent with the others awaited at the same time (verl's
    extra keyword arguments, such as ``reward_router_address``, are not needed here)."""
    return await client().reward(_question(extra_info), solution_str, ground_truth)


def compute_score_sync(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **_: Any
) -> float:
    """One answer, one request: for a caller that needs a plain function."""
    body = {
        "prompts": [_question(extra_info)],
        "responses": [solution_str],
        "labels": [ground_truth or None],
    }
    return client().rewards(body)[0]


def compute_score_batch(
    data_sources: list[str],
    solution_strs: list[str],
    ground_truths: list[Any],
    extra_infos: list[dict | None],
    **_: Any,
) -> list[float]:
    """verl's ``batch`` reward manager: a whole batch in one request."""
    body = {
        "prompts": [_question(info) for info in extra_infos],
        "responses": list(solution_strs),
        "labels": [truth or None for truth in ground_truths],
    }
    return client().rewards(body)


def reward_func(queries: list[str], prompts: list[str], labels: list[Any]) -> dict[str, Any]:
    """OpenRLHF's reward file: its rollouts as it would send them to a remote reward server,
    with the bearer token it cannot send itself."""
    status, answer = client().post({"query": queries, "prompts": prompts, "labels": labels})
    values = answer.get("rewards")
    if status != 200 or not isinstance(values, list) or None in values:
        raise RewardError(f"rlaif serve-reward answered {status}: {_reason(answer)}")
    return answer
