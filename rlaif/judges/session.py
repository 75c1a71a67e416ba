"""The event loop and HTTP client an API judge runs its requests in.

One per ``run``, or one for the judge's life after ``keep_open``; a kept session is closed
when the judge goes, from a thread of its own where another event loop is running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


class Session:
    """An event loop and the HTTP client made in it: one per ``run``, or one for the judge's
    life after ``keep_open`` (a client per batch would pay its set-up and new connections,
    new TLS handshakes against a real API, every batch)."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner(loop_factory=_loop_factory())
        self.client: Any = None

    def close(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._close()
            return
        # Called inside another event loop (a dropped judge's finalizer while a server
        # runs): this session's loop can only run in a thread where none is running.
        closing = threading.Thread(target=self._close, name="rlaif-judge-close")
        closing.start()
        closing.join()

    def _close(self) -> None:
        if self.client is not None:
            self.runner.run(self.client.close())
            self.client = None
        self.runner.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux and macOS): the client's own CPU is what limits
    a judge stage on a small machine, and uvloop's event loop spends less of it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
