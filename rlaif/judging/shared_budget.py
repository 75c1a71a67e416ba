"""One budget for every process of a training run: the reward workers of verl, the rollout
actors of OpenRLHF and a user's own processes each judge in process, yet
``judge.max_cost_usd`` must stop new calls for all of them together.

What each process spends is added to a row of the judgment store (``budgets``, keyed by the
session's name) as its calls are paid; before a call, a process reads what all of them have
spent (at most every ``REFRESH_S``, so the check costs no query per call). The cap can be
passed by at most the calls in flight across the processes, as a single process's can by its
own.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rlaif.judges import Budget
from rlaif.judging.store import connect

REFRESH_S = 0.5
_SCHEMA = "CREATE TABLE IF NOT EXISTS budgets (session TEXT PRIMARY KEY, spent REAL, at REAL)"


class SharedBudget(Budget):
    """A :class:`Budget` whose spending is the sum over every process drawing on ``session``
    in the store at ``store``. ``spent`` stays this process's own; ``total()`` is everyone's."""

    def __init__(self, store: Path, session: str, max_cost_usd: float | None):
        super().__init__(max_cost_usd)
        self.session = session
        self._db = connect(Path(store))
        self._db.execute(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO budgets VALUES (?, 0.0, ?)", (session, time.time()))
        self._db.commit()
        self._total = 0.0
        self._read_at = 0.0
        self._lock = threading.Lock()

    def add(self, cost: float | None) -> None:
        super().add(cost)
        if cost:
            with self._lock, self._db:
                self._db.execute(
                    "UPDATE budgets SET spent = spent + ?, at = ? WHERE session = ?",
                    (cost, time.time(), self.session),
                )
            self._read_at = 0.0  # read again before the next call

    def total(self) -> float:
        """What every process of the session has spent, read at most every ``REFRESH_S``."""
        now = time.monotonic()
        if now - self._read_at >= REFRESH_S:
            with self._lock:
                row = self._db.execute(
                    "SELECT spent FROM budgets WHERE session = ?", (self.session,)
                ).fetchone()
            self._total = row[0] if row else 0.0
            self._read_at = now
        return self._total

    def allows(self) -> bool:
        if self.interrupted or self.halted is not None:
            return False
        return self.max_cost_usd is None or self.total() < self.max_cost_usd

    def exhausted(self) -> bool:
        return self.max_cost_usd is not None and self.total() >= self.max_cost_usd

    def close(self) -> None:
        self._db.close()
