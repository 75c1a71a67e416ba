"""An ASGI app on uvicorn, in a thread (tests, notebooks) or in the foreground (the CLI); what
``rlaif serve-reward`` and ``rlaif review`` share."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from rlaif.errors import RlaifError


class AppServer:
    def __init__(self, app: Any, host: str, port: int, *, what: str):
        import uvicorn

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            timeout_keep_alive=30,
            limit_concurrency=1024,
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
        return f"http://{self.host}:{self.port}"

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
