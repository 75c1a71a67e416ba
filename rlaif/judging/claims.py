"""Runs that share a judgment store never ask the same key at once.

Before judging, a run claims the keys it is about to ask, in one SQLite transaction that
also drops keys answered meanwhile. A claim names its holder (host, pid and a random id)
and carries a lease that a heartbeat thread renews. A run that wants a key another live run
holds waits for that answer in the store instead of paying for it again; a claim whose
holder died (its pid is gone on this host, or its lease ran out elsewhere) is taken over.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from rlaif.errors import DiskFullError, writing
from rlaif.judging.store import connect

LEASE_S = 60.0
_CHUNK = 500


class Claims:
    """``with Claims(store_path) as claims: mine, others = claims.claim(keys)``; every claim
    of this holder is released on exit."""

    def __init__(self, path: Path, *, lease_s: float = LEASE_S):
        self.path = Path(path)
        self.lease_s = lease_s
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:12]}"
        self._db = connect(self.path)
        self._db.isolation_level = None  # transactions are explicit (BEGIN IMMEDIATE)
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._renew, daemon=True)

    def __enter__(self) -> Claims:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._heartbeat.join()
        # on a full disk the claims stay; they are this process's, taken over once it ends
        with contextlib.suppress(DiskFullError), writing(self.path):
            self._db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
        self._db.close()

    def claim(self, keys: Iterable[str]) -> tuple[list[str], list[str]]:
        """Claim ``keys``: returns (claimed by this run now, held by another live run). Keys
        answered (not ``error``) since the caller looked are in neither."""
        keys = list(dict.fromkeys(keys))
        now = time.time()
        with writing(self.path):
            return self._claim(keys, now)

    def _claim(self, keys: list[str], now: float) -> tuple[list[str], list[str]]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            answered, others = set(), set()
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                answered.update(
                    row[0]
                    for row in self._db.execute(
                        f"SELECT key FROM judgments WHERE key IN ({marks}) AND status != 'error'",
                        chunk,
                    )
                )
                for key, owner, host, pid, expires in self._db.execute(
                    f"SELECT key, owner, host, pid, expires FROM claims WHERE key IN ({marks})",
                    chunk,
                ):
                    if owner != self.owner and self._alive(host, pid, expires, now):
                        others.add(key)
            mine = [k for k in keys if k not in answered and k not in others]
            self._db.executemany(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                [(k, self.owner, self.host, self.pid, now + self.lease_s) for k in mine],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return mine, [k for k in keys if k in others]

    def _alive(self, host: str, pid: int, expires: float, now: float) -> bool:
        if expires < now:
            return False
        if host != self.host:
            return True  # another machine: only its lease can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _renew(self) -> None:
        db = connect(self.path)
        try:
            while not self._stop.wait(self.lease_s / 3):
                try:
                    with db:
                        db.execute(
                            "UPDATE claims SET expires = ? WHERE owner = ?",
                            (time.time() + self.lease_s, self.owner),
                        )
                except sqlite3.OperationalError:
                    continue  # busy for a whole timeout: the next beat renews
        finally:
            db.close()
