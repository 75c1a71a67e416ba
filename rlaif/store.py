"""Durable judgment records in SQLite (WAL), keyed by what was asked.

A judgment is written within one flush of being made, so a crash loses at most
the batch in flight, and the key (backend, model, rendered messages, decoding
parameters, rubric id and hash) means the same question is never paid for twice.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

_TYPES = {
    "key": "TEXT PRIMARY KEY", "judge": "TEXT", "backend": "TEXT", "model": "TEXT",
    "rubric_id": "TEXT", "rubric_hash": "TEXT", "prompt_hash": "TEXT", "status": "TEXT",
    "verdict": "TEXT", "p_first": "REAL", "label_mass": "REAL", "score": "REAL",
    "raw_output": "TEXT",
    "error": "TEXT", "input_tokens": "INTEGER", "output_tokens": "INTEGER", "cost_usd": "REAL",
    "created_at": "REAL",
}  # fmt: skip
_COLUMNS = tuple(_TYPES)


class JudgmentStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        columns = ", ".join(f"{c} {t}" for c, t in _TYPES.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS judgments ({columns})")
        # Stores written by an older version gain the newer columns in place.
        have = {row[1] for row in self._db.execute("PRAGMA table_info(judgments)")}
        for column in _COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE judgments ADD COLUMN {column} {_TYPES[column]}")
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JudgmentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM judgments WHERE key IN "
                f"({', '.join('?' * len(chunk))})",
                chunk,
            )
            found.update({row[0]: dict(zip(_COLUMNS, row, strict=True)) for row in rows})
        return found

    def put_many(self, records: Iterable[dict[str, Any]]) -> None:
        """Insert finished judgments. A key keeps its first real answer; only a stored
        ``error`` (nothing was learned, maybe nothing paid) is replaced by a later try."""
        now = time.time()
        rows = [tuple(r.get(c) if c != "created_at" else now for c in _COLUMNS) for r in records]
        with self._db:
            self._db.executemany(
                f"INSERT INTO judgments ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))}) ON CONFLICT(key) DO UPDATE SET "
                f"{', '.join(f'{c}=excluded.{c}' for c in _COLUMNS[1:])} "
                "WHERE judgments.status = 'error'",
                rows,
            )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM judgments"):
            yield dict(zip(_COLUMNS, row, strict=True))

    def stats(self) -> list[dict[str, Any]]:
        """Counts, tokens and cost per judge, model and status."""
        rows = self._db.execute(
            "SELECT judge, backend, model, status, COUNT(*), SUM(input_tokens), "
            "SUM(output_tokens), SUM(cost_usd), MIN(created_at), MAX(created_at) "
            "FROM judgments GROUP BY judge, backend, model, status ORDER BY judge, status"
        )
        names = (
            "judge",
            "backend",
            "model",
            "status",
            "count",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "first_at",
            "last_at",
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    def prune(
        self,
        *,
        older_than_s: float | None = None,
        statuses: list[str] | None = None,
        judge: str | None = None,
    ) -> int:
        """Delete matching judgments (all of them when no filter is given); returns how many."""
        clauses, args = [], []
        if older_than_s is not None:
            clauses.append("created_at < ?")
            args.append(time.time() - older_than_s)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if judge:
            clauses.append("judge = ?")
            args.append(judge)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._db:
            deleted = self._db.execute(f"DELETE FROM judgments{where}", args).rowcount
        self._db.execute("VACUUM")
        return deleted
