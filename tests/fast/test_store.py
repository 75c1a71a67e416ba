import json
import sqlite3

import pytest

from rlaif.judging.store import JudgmentStore


def rec(key, status="ok", p=0.7):
    return {
        "key": key,
        "judge": "j",
        "backend": "python",
        "status": status,
        "p_first": p,
        "raw_output": "0.7",
        "error": None if status == "ok" else "boom",
    }


def test_roundtrip_and_reopen(tmp_path):
    path = tmp_path / "j.sqlite"
    with JudgmentStore(path) as store:
        store.put_many([rec("a"), rec("b", p=0.2)])
        assert len(store) == 2
    with JudgmentStore(path) as store:
        got = store.get_many(["a", "b", "missing"])
        assert set(got) == {"a", "b"}
        assert got["b"]["p_first"] == 0.2
        assert got["a"]["created_at"] > 0


def test_first_answer_wins_but_errors_are_replaced(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        store.put_many([rec("a", p=0.7), rec("e", status="error", p=None)])
        store.put_many([rec("a", p=0.1), rec("e", p=0.3)])
        got = store.get_many(["a", "e"])
        assert got["a"]["p_first"] == 0.7
        assert got["e"]["status"] == "ok"
        assert got["e"]["p_first"] == 0.3


def test_wal_mode_and_visible_to_other_connections(tmp_path):
    path = tmp_path / "j.sqlite"
    store = JudgmentStore(path)
    store.put_many([rec("a")])
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == 1
    other.close()
    store.close()


def test_many_keys_are_chunked(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        store.put_many(rec(f"k{i}") for i in range(1200))
        assert len(store.get_many(f"k{i}" for i in range(0, 1200, 1))) == 1200


def test_stats_and_prune(tmp_path):
    with JudgmentStore(tmp_path / "j.sqlite") as store:
        store.put_many(
            [
                {**rec(f"ok{i}"), "input_tokens": 10, "output_tokens": 1, "cost_usd": 0.01}
                for i in range(3)
            ]
        )
        store.put_many([rec("bad", status="error", p=None)])
        stats = {row["status"]: row for row in store.stats()}
        assert stats["ok"]["count"] == 3 and stats["ok"]["input_tokens"] == 30
        assert stats["ok"]["cost_usd"] == pytest.approx(0.03)
        assert stats["error"]["count"] == 1
        assert store.prune(statuses=["error"]) == 1
        assert store.prune(older_than_s=3600) == 0
        assert store.prune(judge="someone-else") == 0
        assert store.prune(older_than_s=0) == 3
        assert len(store) == 0


def test_the_sidecar_remembers_how_many_judgments_the_store_held(tmp_path):
    from rlaif.judging.store import count_path, missing_judgments

    path = tmp_path / "j.sqlite"
    with JudgmentStore(path) as store:
        store.put_many({"key": f"k{i}", "status": "ok"} for i in range(3))
        first_id = store.store_id
        assert store.marks() == {}  # the store's id is no mark of a deliberate loss
    assert json.loads(count_path(path).read_text())["judgments"] == 3
    assert missing_judgments(path) is None
    with JudgmentStore(path) as store:
        store._db.execute("DELETE FROM judgments WHERE key = 'k0'")
        store._db.commit()
        store.put({"key": "k9", "status": "error"})  # a write: the count is kept at its most
    with JudgmentStore(path) as store:
        store._db.execute("DELETE FROM judgments WHERE key = 'k9'")
        store._db.commit()
    assert "holds 2 judgments, but" in missing_judgments(path)
    with JudgmentStore(path) as store:
        assert store.prune(statuses=["ok"], judge=None) == 2  # a deliberate loss
        assert store.store_id == first_id
    assert missing_judgments(path) is None
    path.unlink()
    count_path(path).write_text(json.dumps({"store_id": first_id, "judgments": 4}))
    assert "the judgment store is missing" in missing_judgments(path)
    with JudgmentStore(path) as fresh:  # a new file is another store
        assert fresh.store_id != first_id
    assert "(and it is not the same store file)" in missing_judgments(path)
