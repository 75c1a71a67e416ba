"""One run at a time: an exclusive ``flock`` on a lock file in the run's directory.

The kernel drops a ``flock`` the moment its holder dies (``kill -9`` included), so a lock
left behind by a dead process is never stale in the kernel's eyes: the next run simply
takes it, and the holder's pid and start time written in the file are only there to say
who holds it (or who held it, when it is taken over).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from rlaif.errors import RlaifError

log = logging.getLogger(__name__)


class LockedError(RlaifError):
    """Another live process is running the same pipeline."""


class RunLock:
    """``with RunLock(path): ...`` raises :class:`LockedError` at once if it is held."""

    def __init__(self, path: Path, *, what: str):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RlaifError(
                f"{self.path}: cannot create the lock file ({exc.strerror}); is "
                f"{self.path.parent} a writable folder?"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(
                f"{self.what} is already running ({_describe(holder)}); lock {self.path}. "
                "This run exits without touching anything."
            ) from None
        previous = _read_holder(fd)
        if previous.get("pid") and not _alive(previous):
            log.warning(
                "taking over the lock %s left by a dead process (%s)",
                self.path,
                _describe(previous),
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock at ``path`` (probed without blocking)."""
    if not Path(path).exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot tell; the flock already said it is free
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"
