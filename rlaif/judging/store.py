"""Durable judgment records in SQLite (WAL), keyed by what was asked.

Every answer is committed the moment it arrives (WAL with ``synchronous=NORMAL``: a write,
no fsync, so it survives the process being killed), before the request's slot takes the
next request: after a crash only the calls in flight are asked again. The key (backend,
model, rendered messages, decoding parameters, rubric id and hash) means the same question
is never paid for twice, and runs that share a store claim keys before asking (see
:mod:`rlaif.judging.claims`), so two of them never ask the same one at once.

A failed judgment (``error``) is kept with its reason; a later try replaces it, and every
failure is also appended to ``failures``, the history of what went wrong for each key.

Beside the store, ``<store>.count.json`` records its id and the most judgments it has held
(written when a connection that stored judgments closes). A store that holds fewer (emptied,
swapped for an older backup, deleted) would be taken as merely new and every missing judgment
paid again, so :func:`missing_judgments` names it before anything is asked, whichever run
directory, server or trainer opens it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rlaif.errors import ConfigError, DiskFullError, writing
from rlaif.hashing import stable_hash
from rlaif.redaction import redact

_TYPES = {
    "key": "TEXT PRIMARY KEY", "judge": "TEXT", "backend": "TEXT", "model": "TEXT",
    "rubric_id": "TEXT", "rubric_hash": "TEXT", "prompt_hash": "TEXT", "status": "TEXT",
    "verdict": "TEXT", "p_first": "REAL", "label_mass": "REAL", "score": "REAL",
    "ranking": "TEXT", "items": "TEXT", "raw_output": "TEXT",
    "error": "TEXT", "input_tokens": "INTEGER", "output_tokens": "INTEGER", "cost_usd": "REAL",
    "created_at": "REAL", "failures": "INTEGER", "policy_step": "INTEGER",
    "cached_input_tokens": "INTEGER", "cache_write_tokens": "INTEGER", "cache_saved_usd": "REAL",
}  # fmt: skip
_COLUMNS = tuple(_TYPES)
_INSERT = (
    f"INSERT INTO judgments ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT(key) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS[1:] if c != "failures")
    + ", failures = COALESCE(judgments.failures, 0) + excluded.failures "
    "WHERE judgments.status = 'error'"
)
"""A key keeps its first real answer; only a stored error is replaced, counting a failure."""
_TEXT = ("raw_output", "error")
"""Free text a provider may have filled with anything, a key it echoed included."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT, judge TEXT, error TEXT, pid INTEGER, created_at REAL);
CREATE INDEX IF NOT EXISTS failures_key ON failures (key);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY, owner TEXT, host TEXT, pid INTEGER, expires REAL);
CREATE INDEX IF NOT EXISTS claims_owner ON claims (owner);
CREATE TABLE IF NOT EXISTS human_labels (
    key TEXT, reviewer TEXT, pair_id TEXT, run TEXT, label TEXT, created_at REAL,
    PRIMARY KEY (key, reviewer));
CREATE TABLE IF NOT EXISTS checklist_edits (
    key TEXT PRIMARY KEY, items TEXT, reviewer TEXT, created_at REAL);
"""
HUMAN_LABELS = ("A", "B", "tie", "flag")
"""What a person can say of a pair in ``rlaif review``: response A or B is better, neither
(a tie), or something is wrong with the pair (flagged: left out of preferences and
agreement)."""


def pair_key(prompt: Any, response_a: str, response_b: str) -> str:
    """A pair by its content, so a person's label follows the pair into every run (and every
    night's cumulative set) that shows the same prompt and answers in the same order."""
    return stable_hash(["pair", prompt, response_a, response_b])


class StoreDamagedError(ConfigError):
    """The store file cannot be read as SQLite; the message says how to recover."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode that waits for other writers instead of failing."""
    db = sqlite3.connect(path, timeout=60, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def count_path(store: str | Path) -> Path:
    """The sidecar of a store: its id and the most judgments it has held."""
    store = Path(store)
    return store.with_name(store.name + ".count.json")


def _recorded(store: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(count_path(store).read_text())
        return data if isinstance(data, dict) and isinstance(data.get("judgments"), int) else None
    except (OSError, ValueError):
        return None


def missing_judgments(store: str | Path) -> str | None:
    """Why the store at ``store`` cannot be trusted to hold what was paid for: it holds fewer
    judgments than its sidecar records it held (or is gone); None when it holds them all."""
    store = Path(store)
    recorded = _recorded(store)
    if not recorded or recorded["judgments"] <= 0:
        return None
    held = 0
    if store.exists():
        with JudgmentStore(store) as db:
            held = len(db)
            same = db.store_id == recorded.get("store_id")
    else:
        same = False
    if held >= recorded["judgments"]:
        return None
    what = "is missing" if not store.exists() else f"holds {held} judgments"
    other = "" if same or not store.exists() else " (and it is not the same store file)"
    return (
        f"{store}: the judgment store {what}{other}, but {count_path(store)} records that it "
        f"held {recorded['judgments']}; judging now would pay again for the "
        f"{recorded['judgments'] - held} missing. Restore the store from a backup (or `rlaif "
        f"cache salvage` a damaged copy), or accept the loss with `rlaif cache recount "
        f"--store {store}`"
    )


class JudgmentStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._wrote = False
        self.policy_step: int | None = None
        """The trainer step whose policy wrote the answers being judged now, recorded with
        each new judgment (a live reward sets it): how stale a judgment reused later is. It
        is no part of the key, so the same answer is never paid for twice."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with writing(self.path):
                self._db = connect(self.path)
                self._create()
        except DiskFullError as exc:
            raise DiskFullError(
                self.path, detail=" (the store could not be opened; nothing was asked)"
            ) from exc
        except (OSError, sqlite3.OperationalError) as exc:  # before DatabaseError, its parent
            raise ConfigError(f"{self.path}: cannot open the judgment store ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise StoreDamagedError(damaged_message(self.path, exc)) from None

    def _create(self) -> None:
        columns = ", ".join(f"{c} {t}" for c, t in _TYPES.items())
        self._db.execute(f"CREATE TABLE IF NOT EXISTS judgments ({columns})")
        # Stores written by an older version gain the newer columns in place.
        have = {row[1] for row in self._db.execute("PRAGMA table_info(judgments)")}
        for column in _COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE judgments ADD COLUMN {column} {_TYPES[column]}")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (uuid.uuid4().hex,))
        self._db.commit()

    @property
    def store_id(self) -> str:
        """Made when the store file was created; a copy keeps it, a new file has another."""
        return self._db.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0]

    def record_count(self, *, exact: bool = False) -> None:
        """Write the sidecar: this store's id and the most judgments it has held (``exact``:
        what it holds now, after a deliberate loss such as pruning)."""
        held = len(self)
        recorded = _recorded(self.path)
        if not exact and recorded and recorded.get("store_id") == self.store_id:
            held = max(held, recorded["judgments"])
        side = count_path(self.path)
        temp = side.with_name(f"{side.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        with contextlib.suppress(OSError):  # a full disk: the store itself is what matters
            temp.write_text(
                json.dumps({"store_id": self.store_id, "judgments": held, "at": time.time()})
            )
            os.replace(temp, side)
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)

    def close(self) -> None:
        if self._wrote:
            with contextlib.suppress(sqlite3.Error):
                self.record_count()
        self._db.close()

    def __enter__(self) -> JudgmentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _readable(self) -> Iterator[None]:
        """Damage found mid-run (a malformed page) is the same clear error as at open."""
        try:
            yield
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreDamagedError(damaged_message(self.path, exc)) from None

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        keys = list(dict.fromkeys(keys))
        with self._readable():
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
        """Insert finished judgments in one transaction. A key keeps its first real answer;
        only a stored ``error`` (nothing was learned) is replaced by a later try, and a new
        error on it counts one more failure."""
        now = time.time()
        rows, failed = [], []
        for record in records:
            r = {
                "policy_step": self.policy_step,
                **record,
                **{c: redact(record.get(c)) for c in _TEXT},
                "created_at": now,
                "failures": int(record.get("status") == "error"),
            }
            rows.append(tuple(r.get(c) for c in _COLUMNS))
            if r["failures"]:
                failed.append((r["key"], r.get("judge"), r.get("error"), os.getpid(), now))
        with writing(self.path), self._readable(), self._db:
            self._db.executemany(_INSERT, rows)
            if failed:
                self._db.executemany("INSERT INTO failures VALUES (?, ?, ?, ?, ?)", failed)
        self._wrote = True

    def put(self, record: dict[str, Any]) -> None:
        """One answer, committed now: it is on disk before its request's slot is reused."""
        self.put_many([record])

    def failure_history(self, key: str) -> list[dict[str, Any]]:
        """Every failed try of ``key``, oldest first."""
        rows = self._db.execute(
            "SELECT judge, error, pid, created_at FROM failures WHERE key = ? ORDER BY rowid",
            (key,),
        )
        return [dict(zip(("judge", "error", "pid", "created_at"), r, strict=True)) for r in rows]

    def put_label(
        self, key: str, label: str, *, reviewer: str, pair_id: str = "", run: str = ""
    ) -> None:
        """A person's label for the pair ``key`` (:func:`pair_key`), committed now; the same
        reviewer labelling the pair again replaces their label."""
        if label not in HUMAN_LABELS:
            raise ConfigError(f"label {label!r}: one of {', '.join(HUMAN_LABELS)}")
        with writing(self.path), self._readable(), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO human_labels VALUES (?, ?, ?, ?, ?, ?)",
                (key, reviewer, pair_id, run, label, time.time()),
            )

    def human_labels(self, keys: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The newest label of each labelled pair (any reviewer), by pair key: ``label``,
        ``reviewer``, ``pair_id``, ``run``, ``created_at``."""
        names = ("key", "reviewer", "pair_id", "run", "label", "created_at")
        with self._readable():
            rows = self._db.execute(
                f"SELECT {', '.join(names)} FROM human_labels ORDER BY created_at, rowid"
            ).fetchall()
        wanted = None if keys is None else set(keys)
        return {
            r[0]: dict(zip(names[1:], r[1:], strict=True))
            for r in rows
            if wanted is None or r[0] in wanted
        }

    def put_checklist_edit(self, key: str, items: str, *, reviewer: str) -> None:
        """A person's checklist in place of the one written under ``key`` (the judge's own
        stays in ``judgments``), committed now; a later edit replaces it."""
        with writing(self.path), self._readable(), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO checklist_edits VALUES (?, ?, ?, ?)",
                (key, items, reviewer, time.time()),
            )

    def checklist_edits(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """The edited checklists (their JSON) by the key of the judgment they replace."""
        with self._readable():
            rows = self._db.execute("SELECT key, items FROM checklist_edits").fetchall()
        wanted = None if keys is None else set(keys)
        return {k: items for k, items in rows if wanted is None or k in wanted}

    def check(self) -> None:
        """SQLite's ``quick_check`` over every page: damage anywhere is said now, before a
        run spends anything, not when the judge stage reaches it."""
        with self._readable():
            problems = [r[0] for r in self._db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise StoreDamagedError(damaged_message(self.path, "; ".join(problems[:3])))

    def mark(self, key: str, value: str) -> None:
        """Note why the store holds fewer judgments than runs recorded (salvaged, pruned)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def marks(self) -> dict[str, str]:
        """Why the store holds fewer judgments than runs recorded (``mark``)."""
        return dict(self._db.execute("SELECT key, value FROM meta WHERE key != 'store_id'"))

    def __len__(self) -> int:
        with self._readable():
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
        self.mark("pruned_at", str(time.time()))
        self._db.execute("VACUUM")
        self.record_count(exact=True)
        return deleted


def damaged_message(path: Path, exc: Exception | str) -> str:
    return (
        f"{path}: the judgment store is damaged ({exc}). Nothing was run. To recover, run "
        f"`rlaif cache salvage --store {path}`: it moves the file aside and copies every "
        "judgment SQLite can still read into a fresh store (the rest will be asked again)"
    )


def salvage(path: Path) -> dict[str, Any]:
    """Move a damaged store aside (``<name>.damaged-<time>``) and copy every judgment row
    SQLite can still read into a fresh store at ``path``; returns what was saved and how
    many keys were lost (None when the file's end is gone, so their number is unknown)."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            shutil.move(side, aside.with_name(aside.name + suffix))
    try:
        rows, last = _readable_rows(aside)
    except sqlite3.DatabaseError:
        rows, last = {}, None  # not even the schema is readable: nothing to copy
    labels = _readable(aside, "key, reviewer, pair_id, run, label, created_at", "human_labels")
    edits = _readable(aside, "key, items, reviewer, created_at", "checklist_edits")
    with JudgmentStore(path) as fresh:
        fresh.put_many(r for r in rows.values() if r.get("status") != "error")
        with fresh._db:
            fresh._db.executemany(
                "INSERT OR REPLACE INTO human_labels VALUES (?, ?, ?, ?, ?, ?)", labels
            )
            fresh._db.executemany(
                "INSERT OR REPLACE INTO checklist_edits VALUES (?, ?, ?, ?)", edits
            )
        fresh.mark("salvaged_from", str(aside))
        fresh.record_count(exact=True)
    lost = None if last is None else max(0, last - len(rows))
    return {"moved_to": str(aside), "salvaged": len(rows), "lost": lost, "labels": len(labels)}


def _readable(path: Path, columns: str, table: str) -> list[tuple]:
    """What people wrote (labels, checklist edits) that SQLite can still read (nothing when
    their table is damaged or absent)."""
    old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return old.execute(f"SELECT {columns} FROM {table}").fetchall()
    except sqlite3.DatabaseError:
        return []
    finally:
        old.close()


def _readable_rows(path: Path) -> tuple[dict[int, dict[str, Any]], int | None]:
    """Every judgment row readable page by page: forward from the first row until a damaged
    page, on past it by seeking further and further ahead, and backward from the last row,
    as SQLite's own ``.dump`` does. Returns the rows by rowid and the last rowid (None when
    the end of the table cannot be read)."""
    old = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        old.execute("PRAGMA writable_schema=ON")  # a damaged index entry must not hide the table
        have = [r[1] for r in old.execute("PRAGMA table_info(judgments)")]
        columns = [c for c in _COLUMNS if c in have]
        select = f"SELECT rowid, {', '.join(columns)} FROM judgments"
        rows: dict[int, dict[str, Any]] = {}

        def read(sql: str, args: tuple = ()) -> int | None:
            """Rows of ``sql`` until it ends (None) or hits damage (the last rowid read)."""
            at = None
            try:
                for rowid, *values in old.execute(sql, args):
                    rows[rowid] = dict(zip(columns, values, strict=True))
                    at = rowid
            except sqlite3.DatabaseError:
                return at if at is not None else args[0] if args else 0
            return None

        after = read(f"{select} WHERE rowid > ? ORDER BY rowid", (0,))
        while after is not None:
            after = _next_readable(old, after)
            if after is not None:
                after = read(f"{select} WHERE rowid >= ? ORDER BY rowid", (after,))
        read(f"{select} ORDER BY rowid DESC")
        try:
            last = old.execute("SELECT MAX(rowid) FROM judgments").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            last = None
        return rows, last
    finally:
        old.close()


def _next_readable(db: sqlite3.Connection, after: int) -> int | None:
    """The first rowid past ``after`` a seek can reach, looking twice as far each time a
    seek lands on a damaged page; None when nothing readable follows."""
    step = 1
    while step < 1 << 40:
        try:
            row = db.execute(
                "SELECT rowid FROM judgments WHERE rowid >= ? ORDER BY rowid LIMIT 1",
                (after + step,),
            ).fetchone()
        except sqlite3.DatabaseError:
            step *= 2
            continue
        return None if row is None else row[0]
    return None
