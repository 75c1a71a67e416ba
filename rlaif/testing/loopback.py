"""A real HTTP server on 127.0.0.1 speaking OpenAI ``/v1/chat/completions`` and Anthropic
``/v1/messages``, for what no real server produces on demand: 429s with ``Retry-After``,
5xx, hangs, garbled bodies, refusals and a requests-per-second limit.

Faults are asked for by markers in the judged text, e.g. ``[[429:2]]`` (the first two
attempts of that request get a 429), ``[[500:1]]``, ``[[hang:1]]``, ``[[garbage:1]]``,
``[[always500]]``, ``[[401]]``, ``[[refuse]]``, ``[[nonsense]]`` (an answer with no verdict
in it). ``fault_rates`` adds faults at random to every attempt (``429``, ``500``, ``garbage``,
and ``drop``: hang, then close the connection without an answer), as a bad night would.
Without a fault the judge is deterministic: the shorter of the two answers wins with
probability 0.8; a pointwise request (one ``<answer>`` block) scores the answer 5, 3 or 1 on
a 1-5 scale as it is short (under 20 characters), middling or long (60 and over); a listwise
request (``<answer label="X">`` blocks) gives each answer a chance of being the best that falls
with its length (the shortest ranks first). A checklist request (a ``checklist`` rubric: a
``<request>`` and no answer) gets three items, one checked (at most 40 characters) and two for
a judge; a checklist items request (``<requirement number="N">`` blocks) is met on every item
by an answer under 40 characters, on none by a longer one.
``answers`` counts the real answers sent for each distinct input.

Its usage reports prompt caching as each provider does, a token being 4 characters: OpenAI
caches every prefix of 1,024 tokens or more by itself and reports
``prompt_tokens_details.cached_tokens`` (in steps of 128 tokens); Anthropic caches the prefix up
to each ``cache_control`` breakpoint of 1,024 tokens or more and reports
``cache_read_input_tokens``, ``cache_creation_input_tokens`` and the rest as ``input_tokens``.
``input_tokens``, ``cached_tokens`` and ``cache_write_tokens`` add them up over every answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
import sys
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_MARKER = re.compile(r"\[\[(429|500|hang|garbage):(\d+)\]\]")
_ANSWER = re.compile(r"<answer_([AB])>\n(.*?)\n</answer_\1>", re.DOTALL)
_ONE_ANSWER = re.compile(r"<answer>\n(.*?)\n</answer>", re.DOTALL)
_LISTED = re.compile(r'<answer label="(\w+)">\n(.*?)\n</answer>', re.DOTALL)
_REQUIREMENT = re.compile(r'<requirement number="\d+">')
CHECKLIST = [
    {"requirement": "At most 40 characters", "weight": 2, "check": "max_chars", "value": "40"},
    {"requirement": "Answers the request", "weight": 1, "check": "none", "value": ""},
    {"requirement": "Stays polite", "weight": 1, "check": "none", "value": ""},
]
"""The checklist the loopback judge writes for every prompt."""


DROP = (0, {}, b"")
"""What ``respond`` returns for a request that gets no answer: the connection is closed."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 resets connections under load

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the crash tests do it on purpose) is not news."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LoopbackJudgeServer:
    """``with LoopbackJudgeServer(latency_s=0.1) as server: server.openai_url ...``"""

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        max_per_second: int | None = None,
        hang_s: float = 5.0,
        fault_rates: dict[str, float] | None = None,
        seed: int = 0,
        port: int = 0,
        echo_key: bool = False,
        models: tuple[str, ...] | None = None,
        api_key: str | None = None,
        cache_min_tokens: int = 1024,
    ):
        self.latency_s = latency_s
        self.max_per_second = max_per_second
        self.hang_s = hang_s
        self.fault_rates = fault_rates or {}
        self.echo_key = echo_key
        """A 401 body that repeats the key it was sent, as some proxies do."""
        self.models = models
        """What ``GET /v1/models`` lists (None: no model list, a 404 as some servers give)."""
        self.api_key = api_key
        """The one key accepted (None: any); another gets a 401 on every endpoint."""
        self.model_lists = 0
        """``GET /v1/models`` calls: preflight's, which cost nothing."""
        self._random = random.Random(seed)
        self.attempts: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()
        self.served: Counter[int] = Counter()
        self.requests = 0
        self.connections = 0
        """TCP connections accepted: what a client that reuses its connections keeps low."""
        self.in_flight = 0
        self.peak_in_flight = 0
        self.cache = PromptCache(cache_min_tokens)
        self.input_tokens = 0
        self.cached_tokens = 0
        self.cache_write_tokens = 0
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def __enter__(self) -> LoopbackJudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- behaviour ------------------------------------------------------------------------
    def respond(
        self, path: str, body: dict[str, Any], key_sent: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        text = "\n".join(_content(m) for m in body.get("messages", []))
        key = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            self.requests += 1
            self.attempts[key] += 1
            attempt = self.attempts[key]
            limited = self._over_limit()
        if limited:
            return 429, {"retry-after": "0.2"}, b'{"error": {"message": "rate limited"}}'
        if "[[401]]" in text:
            echoed = f" {key_sent}" if self.echo_key else ""
            return 401, {}, json.dumps({"error": {"message": f"invalid api key{echoed}"}}).encode()
        if "[[always500]]" in text:
            return 500, {}, b'{"error": {"message": "boom"}}'
        marker = _MARKER.search(text)
        if marker and attempt <= int(marker.group(2)):
            fault = marker.group(1)
            if fault == "429":
                return 429, {"retry-after": "0.1"}, b'{"error": {"message": "slow down"}}'
            if fault == "500":
                return 500, {}, b'{"error": {"message": "internal"}}'
            if fault == "hang":
                time.sleep(self.hang_s)
            if fault == "garbage":
                return 200, {}, b'{"choices": [ this is not json'
        fault = self._random_fault()
        if fault == "429":
            return 429, {"retry-after": "0.05"}, b'{"error": {"message": "slow down"}}'
        if fault == "500":
            return 500, {}, b'{"error": {"message": "internal"}}'
        if fault == "garbage":
            return 200, {}, b'{"choices": [ this is not json'
        if fault == "drop":
            time.sleep(self.hang_s)
            return DROP
        if self.latency_s:
            time.sleep(self.latency_s)
        refuse = "[[refuse]]" in text
        anthropic = path.endswith("/messages")
        payload = (_anthropic if anthropic else _openai)(body, _label_probs(text), refuse, text)
        usage = payload["usage"]
        if anthropic:
            read, written, total = self.cache.breakpoints(body)
            usage["input_tokens"] = total - read - written
            usage |= {"cache_read_input_tokens": read, "cache_creation_input_tokens": written}
        else:
            read, written = self.cache.prefix(text), 0
            usage["prompt_tokens_details"] = {"cached_tokens": min(read, usage["prompt_tokens"])}
            total = usage["prompt_tokens"]
        with self._lock:
            self.answers[key] += 1
            self.input_tokens += total
            self.cached_tokens += read
            self.cache_write_tokens += written
        return 200, {}, json.dumps(payload).encode()

    def _random_fault(self) -> str | None:
        if not self.fault_rates:
            return None
        with self._lock:
            draw = self._random.random()
        for fault, rate in self.fault_rates.items():
            if draw < rate:
                return fault
            draw -= rate
        return None

    def route(
        self, method: str, path: str, content_type: str | None, raw: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """Endpoints other than the two judging ones (None: not one of them); subclasses add
        theirs here."""
        if method == "GET" and path.rstrip("/") == "/v1/models" and self.models is not None:
            with self._lock:
                self.model_lists += 1
            listed = [{"id": m, "object": "model", "type": "model"} for m in self.models]
            return 200, {}, json.dumps({"object": "list", "data": listed}).encode()
        return None

    def refuses(self, key_sent: str | None) -> tuple[int, dict[str, str], bytes] | None:
        """A 401 when ``api_key`` is set and the request carries another key."""
        if self.api_key is None or (key_sent or "").removeprefix("Bearer ") == self.api_key:
            return None
        return 401, {}, b'{"error": {"message": "invalid api key"}}'

    def _over_limit(self) -> bool:
        if self.max_per_second is None:
            return False
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - 1.0:
            self._recent.popleft()
        if len(self._recent) >= self.max_per_second:
            return True
        self._recent.append(now)
        return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The head and the body go out in two writes: with Nagle's algorithm on, the
            # body waits for the client's delayed ACK (40 ms on Linux) on every answer.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if len(raw) < length:  # the client died mid-send: no request, nothing paid
                    self.close_connection = True
                    return
                refused = server.refuses(self._key())
                if refused is not None:
                    self._send(*refused)
                    return
                routed = server.route("POST", self.path, self.headers.get("content-type"), raw)
                if routed is not None:
                    self._send(*routed)
                    return
                body = json.loads(raw or b"{}")
                with server._lock:
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    answer = server.respond(self.path, body, self._key() or "")
                finally:
                    with server._lock:
                        server.in_flight -= 1
                if answer is DROP:
                    self.close_connection = True
                    return
                self._send(*answer)

            def do_GET(self) -> None:  # noqa: N802
                refused = server.refuses(self._key())
                routed = refused or server.route("GET", self.path, None, b"")
                self._send(*(routed or (404, {}, b'{"error": {"message": "not found"}}')))

            def _key(self) -> str | None:
                return self.headers.get("authorization") or self.headers.get("x-api-key")

            def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
                with server._lock:
                    server.served[status] += 1
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class PromptCache:
    """The prefixes a provider's prompt cache holds (as hashes), a token being 4 characters."""

    BLOCK = 128 * 4
    """OpenAI matches cached prefixes in steps of 128 tokens."""

    def __init__(self, min_tokens: int):
        self.min_chars = min_tokens * 4
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def prefix(self, text: str) -> int:
        """OpenAI: the cached tokens of ``text``'s longest prefix seen before (in steps of 128
        tokens from 1,024), every such prefix of ``text`` kept for the next request."""
        hashed, digests = hashlib.sha256(), []
        for start in range(0, len(text) - len(text) % self.BLOCK, self.BLOCK):
            hashed.update(text[start : start + self.BLOCK].encode())
            if start + self.BLOCK >= self.min_chars:
                digests.append((start + self.BLOCK, hashed.copy().hexdigest()))
        with self._lock:
            hit = max((end for end, d in digests if d in self._seen), default=0)
            self._seen.update(d for _, d in digests)
        return hit // 4

    def breakpoints(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """Anthropic: the tokens read from the cache (the longest breakpoint prefix seen
        before), written to it (up to the last breakpoint long enough to be cached), and all
        the request's input tokens, the system message's included."""
        hashed, ends = hashlib.sha256(), []
        system = body.get("system") or []
        blocks = [{"text": system}] if isinstance(system, str) else list(system)
        for turn in body.get("messages", []):
            content = turn.get("content", "")
            blocks += [{"text": content}] if isinstance(content, str) else content
        length = 0
        for block in blocks:
            hashed.update(block.get("text", "").encode())
            length += len(block.get("text", ""))
            if block.get("cache_control") and length >= self.min_chars:
                ends.append((length, hashed.copy().hexdigest()))
        with self._lock:
            hit = max((end for end, d in ends if d in self._seen), default=0)
            self._seen.update(d for _, d in ends)
        last = max((end for end, _ in ends), default=0)
        return hit // 4, last // 4 - hit // 4, length // 4


def _content(message: dict[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content


def _label_probs(text: str) -> dict[str, float]:
    """The judge's belief over its labels: A/B for a pair, 1-5 for one answer, the best of a
    list's labels."""
    listed = _LISTED.findall(text)
    if listed:
        weights = {label: math.exp(-len(answer) / 50) for label, answer in listed}
        return {label: w / sum(weights.values()) for label, w in weights.items()}
    one = _ONE_ANSWER.search(text)
    if one:
        size = len(one.group(1))
        score = "5" if size < 20 else "3" if size < 60 else "1"
        return {label: 0.9 if label == score else 0.025 for label in "12345"}
    answers = dict(_ANSWER.findall(text))
    a, b = len(answers.get("A", "")), len(answers.get("B", ""))
    p_a = 0.5 if a == b else 0.8 if a < b else 0.2
    return {"A": p_a, "B": 1 - p_a}


def _verdict_text(body: dict[str, Any], probs: dict[str, float], prompt: str) -> str:
    if "[[nonsense]]" in prompt:
        return "Both answers have merit; I cannot decide."
    if _REQUIREMENT.search(prompt):
        one = _ONE_ANSWER.search(prompt)
        met = "yes" if one is not None and len(one.group(1)) < 40 else "no"
        count = len(_REQUIREMENT.findall(prompt))
        return json.dumps({"rationale": "short answers meet it", "met": [met] * count})
    if "checklist" in prompt.lower() and "<answer" not in prompt:
        return json.dumps({"rationale": "what a good answer does", "items": CHECKLIST})
    winner = max(probs, key=probs.__getitem__)  # A on a tie, as before
    if _LISTED.search(prompt):
        ranking = sorted(probs, key=lambda label: -probs[label])
        return json.dumps({"rationale": "shorter is better", "ranking": ranking})
    if winner not in "AB":
        return winner
    if "response_format" in body or "JSON" in prompt:
        return json.dumps({"rationale": "shorter is better", "winner": winner})
    return f"The {winner} answer is more to the point.\nWinner: {winner}"


def _openai(
    body: dict[str, Any], probs: dict[str, float], refuse: bool, prompt: str
) -> dict[str, Any]:
    usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": 1, "total_tokens": 0}
    logprobs = None
    if refuse:
        message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    elif body.get("logprobs"):
        top = [
            *({"token": t, "logprob": math.log(p * 0.9), "bytes": None} for t, p in probs.items()),
            {"token": "The", "logprob": math.log(0.1), "bytes": None},
        ]
        best = max(top, key=lambda t: t["logprob"])
        logprobs = {"content": [{**best, "top_logprobs": top}]}
        message = {"role": "assistant", "content": best["token"], "refusal": None}
    else:
        text = _verdict_text(body, probs, prompt)
        usage["completion_tokens"] = len(text) // 4
        message = {"role": "assistant", "content": text, "refusal": None}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", ""),
        "usage": usage,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "stop", "logprobs": logprobs}
        ],
    }


def _anthropic(
    body: dict[str, Any], probs: dict[str, float], refuse: bool, prompt: str
) -> dict[str, Any]:
    text = "" if refuse else _verdict_text(body, probs, prompt)
    return {
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "refusal" if refuse else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": len(prompt) // 4, "output_tokens": len(text) // 4},
    }


def main() -> None:
    """``python -m rlaif.testing.loopback --latency 0.1``: serve until interrupted, printing
    the base URL first (benchmarks run the server in its own process)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per answer")
    parser.add_argument("--max-per-second", type=int, default=None)
    args = parser.parse_args()
    with LoopbackJudgeServer(latency_s=args.latency, max_per_second=args.max_per_second) as srv:
        print(srv.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
