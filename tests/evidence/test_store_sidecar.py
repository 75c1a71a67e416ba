"""A store that lost judgments is named before anything is paid, wherever the run directory
lives: run directories given with ``--run-dir`` outside ``output_dir`` leave no manifest to
find, and the store's sidecar (``judgments.sqlite.count.json``) still says how many judgments
it held. Five runs of the CLI against a loopback judge (about half a minute)."""

from cli_runner import run_cli
from configs_for_tests import api_judge, pipeline, write

from rlaif.judging.store import JudgmentStore
from rlaif.testing.loopback import LoopbackJudgeServer


def test_a_store_with_judgments_missing_is_named_wherever_the_run_lives(tmp_path, tiny_model):
    """Run directories outside ``output_dir`` (``--run-dir``) leave no manifest to find: the
    store's sidecar still says how many judgments it held."""
    import shutil

    from rlaif.judging.store import count_path

    with LoopbackJudgeServer(models=("judge-model",)) as server:
        config = write(
            tmp_path, pipeline(tmp_path, tiny_model, judges=[api_judge(server.openai_url)])
        )
        store = tmp_path / "judgments.sqlite"

        def run_elsewhere(name: str, *extra: str):
            where = tmp_path / "elsewhere" / name
            return run_cli("run", config, "--stages", "judge", "--run-dir", where, *extra)

        assert run_elsewhere("a").returncode == 0
        asked = server.requests
        backup = tmp_path / "backup.sqlite"
        with JudgmentStore(store) as db:  # an older backup: five judgments short
            db._db.execute(f"VACUUM INTO '{backup}'")
            db._db.execute(
                "DELETE FROM judgments WHERE rowid IN (SELECT rowid FROM judgments LIMIT 5)"
            )
            db._db.commit()
        older = run_elsewhere("b")
        assert older.returncode == 2, older.stderr
        assert f"holds {asked - 5} judgments, but {count_path(store)}" in older.stderr
        assert "rlaif cache recount" in older.stderr

        with JudgmentStore(store) as db:  # emptied
            db._db.execute("DELETE FROM judgments")
            db._db.commit()
        emptied = run_elsewhere("c")
        assert emptied.returncode == 2 and "holds 0 judgments" in emptied.stderr
        assert server.requests == asked  # nothing paid twice

        shutil.copy(backup, store)  # the backup restored: the run goes on, paying nothing
        assert run_elsewhere("d").returncode == 0
        assert server.requests == asked
        with JudgmentStore(store) as db:
            db._db.execute("DELETE FROM judgments WHERE rowid IN (SELECT rowid FROM judgments "
                           "LIMIT 5)")  # fmt: skip
            db._db.commit()
        accepted = run_cli("cache", "recount", "--store", store)
        assert accepted.returncode == 0 and f"{asked - 5} judgments recorded" in accepted.stdout
        assert run_elsewhere("e").returncode == 0
        assert server.requests == asked + 5  # the loss accepted: the five are asked again
