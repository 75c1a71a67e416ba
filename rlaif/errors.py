"""Errors the user can act on: each names the file, line or field at fault."""

from __future__ import annotations

import contextlib
import errno
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path


class RlaifError(Exception):
    """A problem with the user's input or environment, reported without a traceback by the CLI."""


class ConfigError(RlaifError):
    """A pipeline config, rubric, model reference or dataset is invalid."""


class DiskFullError(RlaifError):
    """A write failed for want of disk space. One line: the path, what is free there and
    what to free; the CLI exits with a code of its own."""

    def __init__(self, path: str | Path, need_bytes: int = 64 << 20, detail: str = ""):
        self.path = Path(path)
        free = _free_bytes(self.path)
        super().__init__(
            f"disk full: cannot write {self.path} ({_mb(free)} free there); free at least "
            f"{_mb(max(need_bytes - (free or 0), 1 << 20))} and re-run{detail}"
        )


@contextlib.contextmanager
def writing(path: str | Path, need_bytes: int = 64 << 20) -> Iterator[None]:
    """Turn running out of space while writing ``path`` (Python's, Arrow's or SQLite's way
    of saying it) into a :class:`DiskFullError`."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC or "No space left on device" in str(exc):
            raise DiskFullError(path, need_bytes) from None
        raise
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "disk is full" in str(exc):
            raise DiskFullError(path, need_bytes) from None
        raise


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.exists():
            return shutil.disk_usage(folder).free
    return None


def _mb(size: int | None) -> str:
    return "? MB" if size is None else f"{size / (1 << 20):.0f} MB"
