"""An ASGI app on uvicorn, in a thread (tests, notebooks) or in the foreground (the CLI); what
``rlaif serve-reward`` and ``rlaif review`` share, including what keeps them serving when a
client misbehaves.

uvicorn has no deadline for a request's headers or body and answers 503 to everyone once its
connection limit is reached, so a client that opens many connections and sends half its
headers (or trickles a body) would hold a server for as long as it likes. :class:`Limits` and
the protocol :func:`guarded` wraps around uvicorn's own close such connections:

- a connection waiting for a request (new, or idle after its last answer) gets
  ``header_timeout_s`` to send complete headers;
- a request gets ``body_timeout_s`` to send its whole body;
- one client address holds at most ``max_per_client`` connections (the next ones are
  answered 503 and closed), and when the server holds ``max_connections``, a new connection
  takes the place of the one that has waited longest without sending a request.

Bodies are read by :func:`read_body`, which refuses one over its limit before reading it
(``Content-Length``) or as soon as it passes the limit (chunked).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlaif.errors import RlaifError


@dataclass(frozen=True)
class Limits:
    """What one client may hold of a server."""

    header_timeout_s: float = 10.0
    """A connection without a complete request head after this long is closed."""
    body_timeout_s: float = 60.0
    """A request whose body has not fully arrived after this long is cut off."""
    max_connections: int = 4096
    max_per_client: int = 1024
    """Connections open at once from one client address (one node of OpenRLHF opens one per
    rollout in flight: 512 for a step of 128 prompts x 4)."""
    sweep_s: float = 0.5
    """How often deadlines are checked."""


class BodyError(RlaifError):
    """A request body refused: ``status`` (400, 408, 413) and why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status

    def response(self) -> Any:
        """The answer, closing the connection: the rest of the body is never read."""
        from starlette.responses import JSONResponse

        return JSONResponse(
            {"error": str(self)}, status_code=self.status, headers={"connection": "close"}
        )


async def read_body(request: Any, limit: int) -> bytes:
    """A Starlette request's body, at most ``limit`` bytes: a declared length over it is
    refused before a byte is read, a chunked body as soon as it passes it. A client that
    goes away mid-body (or is cut off at ``body_timeout_s``) is a 408."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BodyError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise BodyError(413, f"body of {int(declared)} bytes over the limit of {limit}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"body over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyError(408, "the body did not arrive in time") from None
    return b"".join(chunks)


class _Guard:
    """The connections of one server, by client address, and the deadlines on them."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.open: set[Any] = set()
        self.per_client: Counter[str] = Counter()
        self.refused = 0
        self.closed_slow = 0
        self._sweeping = False

    def admit(self, conn: Any) -> bool:
        host = conn.client[0] if conn.client else "?"
        if self.per_client[host] >= self.limits.max_per_client:
            self.refused += 1
            return False
        if len(self.open) >= self.limits.max_connections:
            idle = [c for c in self.open if _waiting(c)]
            if not idle:
                self.refused += 1
                return False
            self._close(min(idle, key=lambda c: c.rlaif_since))
        self.open.add(conn)
        self.per_client[host] += 1
        if not self._sweeping:
            self._sweeping = True
            conn.loop.call_later(self.limits.sweep_s, self._sweep, conn.loop)
        return True

    def release(self, conn: Any) -> None:
        if conn in self.open:
            self.open.discard(conn)
            host = conn.client[0] if conn.client else "?"
            self.per_client[host] -= 1
            if self.per_client[host] <= 0:
                del self.per_client[host]

    def _close(self, conn: Any) -> None:
        self.release(conn)
        self.closed_slow += 1
        if not conn.transport.is_closing():
            conn.transport.close()

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        for conn in list(self.open):
            if conn.transport.is_closing():
                continue
            if _waiting(conn):
                if now - conn.rlaif_since > self.limits.header_timeout_s:
                    self._close(conn)
                continue
            if conn.cycle is not conn.rlaif_cycle:  # a request began since the last look
                conn.rlaif_cycle, conn.rlaif_cycle_since = conn.cycle, now
            if conn.cycle.more_body and now - conn.rlaif_cycle_since > self.limits.body_timeout_s:
                self._close(conn)
        if self.open:
            loop.call_later(self.limits.sweep_s, self._sweep, loop)
        else:
            self._sweeping = False


def _waiting(conn: Any) -> bool:
    """No request in progress: the connection is new or idle, waiting for a request head."""
    return conn.cycle is None or conn.cycle.response_complete


_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def guarded(base: type, guard: _Guard) -> type:
    """uvicorn's HTTP protocol class ``base`` with ``guard``'s deadlines and caps."""

    class Guarded(base):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.rlaif_since = time.monotonic()
            self.rlaif_cycle, self.rlaif_cycle_since = None, 0.0
            if not guard.admit(self):
                body = b'{"error": "too many connections from this client; retry shortly"}'
                transport.write(_REFUSED % (len(body), body))
                transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            guard.release(self)
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.rlaif_since = time.monotonic()

    return Guarded


def _raise_open_files_limit() -> None:
    """Every connection is a file: let the process hold as many as its hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class AppServer:
    def __init__(self, app: Any, host: str, port: int, *, what: str, limits: Limits | None = None):
        import uvicorn
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        self.limits = limits or Limits()
        self.guard = _Guard(self.limits)
        _raise_open_files_limit()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            http=guarded(AutoHTTPProtocol, self.guard),
            timeout_keep_alive=5,
            # the guard caps connections itself, keeping those that send requests served
            limit_concurrency=None,
            backlog=4096,
        )
        self.app = app
        self.server = uvicorn.Server(config)
        self.host = host
        self.what = what
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> AppServer:
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RlaifError(f"{self.what}: cannot listen on {self.host}")
            threading.Event().wait(0.05)
        return self

    def serve(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve until Ctrl-C (which ends it quietly); ``on_ready(url)`` once listening."""

        async def run() -> None:
            task = asyncio.ensure_future(self.server.serve())
            while not self.server.started and not task.done():
                await asyncio.sleep(0.05)
            if on_ready is not None and self.server.started:
                on_ready(self.url)
            await task

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the server to this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
