"""Preflight does everything that can be known before money is spent: a rubric that cannot
render, a judge or served sampler that cannot be reached, a key refused or a model not served
all end ``rlaif run`` with exit 2 naming the culprit, before a single prompt is sampled and
with zero requests to any judging or sampling endpoint (the free model list aside)."""

from pathlib import Path

import pytest
from cli_runner import run_cli
from configs_for_tests import api_judge, pipeline, write

from rlaif.judging.store import JudgmentStore
from rlaif.rubrics import find_rubric
from rlaif.testing.loopback import LoopbackJudgeServer

SHIPPED = find_rubric("helpful_harmless").read_text()


def run(tmp_path: Path, config: dict, env: dict | None = None):
    result = run_cli("run", write(tmp_path, config), "--run-dir", tmp_path / "run", env=env)
    assert not (tmp_path / "run" / "samples").exists(), "sampling ran before the error"
    return result


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__ }}",
        "{% include '/etc/passwd' %}",
        "{{ self.__init__ }}",
        b"caf\xe9",
    ],
    ids=["mro", "include", "self", "latin-1"],
)
def test_a_rubric_that_cannot_render_stops_the_run_before_sampling(tmp_path, tiny_model, body):
    rubric = tmp_path / "mine.jinja"
    rubric.write_bytes(SHIPPED.encode() + (body if isinstance(body, bytes) else body.encode()))
    with LoopbackJudgeServer(models=("judge-model",)) as server:
        judge = api_judge(server.openai_url, rubric=str(rubric))
        result = run(tmp_path, pipeline(tmp_path, tiny_model, judges=[judge]))
    assert result.returncode == 2, result.stderr
    assert str(rubric) in result.stderr and "Traceback" not in result.stderr
    if isinstance(body, bytes):
        assert "not UTF-8" in result.stderr
    assert server.requests == 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_judge_stops_the_run_before_sampling(tmp_path, tiny_model):
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = run(tmp_path, pipeline(tmp_path, tiny_model, judges=[api_judge(url)]))
    assert result.returncode == 2, result.stderr
    assert f"judge 'api': nothing answers at {url}" in result.stderr


def test_a_refused_key_and_a_model_not_served_stop_the_run_before_sampling(tmp_path, tiny_model):
    key = "sk-right-key-0123456789"
    with LoopbackJudgeServer(models=("judge-model",), api_key=key) as server:
        judge = api_judge(server.openai_url, api_key_env="RLAIF_TEST_JUDGE_KEY")
        config = pipeline(tmp_path, tiny_model, judges=[judge])
        refused = run(tmp_path, config, env={"RLAIF_TEST_JUDGE_KEY": "sk-wrong-key-9876543210"})
        assert refused.returncode == 2, refused.stderr
        assert "judge 'api'" in refused.stderr and "refused the key in $RLAIF_TEST_JUDGE_KEY" in (
            refused.stderr
        )
        assert "sk-wrong" not in refused.stderr
        other = pipeline(tmp_path, tiny_model, judges=[{**judge, "model": "no-such-model"}])
        missing = run(tmp_path, other, env={"RLAIF_TEST_JUDGE_KEY": key})
        assert missing.returncode == 2, missing.stderr
        assert "does not serve model 'no-such-model'; it serves: judge-model" in missing.stderr
        assert server.requests == 0 and server.model_lists == 1  # the refused key got a 401


def test_a_served_sampler_that_does_not_serve_the_model_stops_the_run(tmp_path, tiny_model):
    with LoopbackJudgeServer(models=("judge-model",)) as server:
        sample = {
            "backend": "openai",
            "server": {"base_url": server.openai_url, "api_key_env": None, "served_model": "sft"},
        }
        config = pipeline(tmp_path, tiny_model, sample=sample)
        result = run(tmp_path, config)
    assert result.returncode == 2, result.stderr
    assert "sample.server" in result.stderr and "does not serve model 'sft'" in result.stderr
    assert server.requests == 0


def test_a_store_emptied_after_judging_stops_the_run_instead_of_paying_again(tmp_path, tiny_model):
    with LoopbackJudgeServer(models=("judge-model",)) as server:
        config = write(
            tmp_path, pipeline(tmp_path, tiny_model, judges=[api_judge(server.openai_url)])
        )
        args = ["run", config, "--stages", "sample,pair,judge"]
        first = run_cli(*args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        asked = server.requests
        store = tmp_path / "judgments.sqlite"
        for side in ("-wal", "-shm"):
            Path(f"{store}{side}").unlink(missing_ok=True)
        store.write_bytes(b"")  # truncated to 0 bytes
        again = run_cli(*args, "--set", "judge.orders=original", cwd=tmp_path)
        assert again.returncode == 2, again.stderr
        assert f"{store}: the judgment store holds 0 judgments" in again.stderr
        assert f"{store}.count.json records that it held {asked}" in again.stderr
        assert "Traceback" not in again.stderr
        Path(f"{store}.count.json").unlink()  # without its sidecar, the manifests still tell
        again = run_cli(*args, "--set", "judge.orders=original", cwd=tmp_path)
        assert again.returncode == 2, again.stderr
        assert f"{store}: the judgment store is empty, but" in again.stderr
        assert "manifest.json records" in again.stderr and "Traceback" not in again.stderr
        store.unlink()
        gone = run_cli(*args, "--set", "judge.orders=original", cwd=tmp_path)
        assert gone.returncode == 2 and "the judgment store is missing" in gone.stderr
        assert server.requests == asked  # nothing asked again


def test_a_damaged_page_in_the_store_is_found_before_sampling(tmp_path, tiny_model):
    store = tmp_path / "judgments.sqlite"
    with JudgmentStore(store) as db:
        db.put_many({"key": f"k{i}", "status": "ok", "raw_output": "x" * 200} for i in range(2000))
    for side in ("-wal", "-shm"):
        Path(f"{store}{side}").unlink(missing_ok=True)
    data = bytearray(store.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 20_000] = b"Z" * 20_000
    store.write_bytes(bytes(data))
    result = run(tmp_path, pipeline(tmp_path, tiny_model))
    assert result.returncode == 2, result.stderr
    assert f"{store}: the judgment store is damaged" in result.stderr
    assert "rlaif cache salvage" in result.stderr


def test_a_store_path_that_is_a_folder_is_named(tmp_path, tiny_model):
    folder = tmp_path / "stores"
    folder.mkdir()
    result = run(tmp_path, pipeline(tmp_path, tiny_model, judge={"cache": str(folder)}))
    assert result.returncode == 2, result.stderr
    assert f"judge.cache: {folder} is a folder" in result.stderr


def test_preflight_asks_only_what_the_stages_run_will_use(tmp_path, tiny_model):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing answers there
    config = write(tmp_path, pipeline(tmp_path, tiny_model, judges=[api_judge(url)]))
    sampled = run_cli("run", config, "--stages", "sample", "--run-dir", tmp_path / "run")
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "run" / "samples").exists()
    judged = run_cli("run", config, "--stages", "judge", "--run-dir", tmp_path / "run")
    assert judged.returncode == 2 and f"nothing answers at {url}" in judged.stderr


def test_an_empty_model_list_and_unlisted_deployments_pass(tmp_path, tiny_model, caplog):
    """Preflight against real model lists (checked in process: the CLI's own preflight path
    is the tests above): a router that lists nothing is let through with a warning, a
    deployment a wildcard route serves is refused until ``check_model: false`` says so."""
    from rlaif.config import validate_pipeline
    from rlaif.errors import ConfigError
    from rlaif.run.preflight import preflight

    def checked(judge: dict) -> None:
        preflight(
            validate_pipeline(pipeline(tmp_path, tiny_model, judges=[judge])), None, ["judge"]
        )

    with LoopbackJudgeServer(models=()) as server:  # a router that lists nothing
        checked(api_judge(server.openai_url))
        assert "lists no models, so whether it serves 'judge-model'" in caplog.text
    with LoopbackJudgeServer(models=("gpt-router-*",)) as server:  # a wildcard route
        judge = api_judge(server.openai_url, model="my-deployment")
        with pytest.raises(ConfigError, match="set check_model: false"):
            checked(judge)
        checked({**judge, "check_model": False})
        assert server.model_lists == 2 and server.requests == 0  # the key and server checked


def test_check_model_leaves_the_config_hash_alone(tmp_path, tiny_model):
    from rlaif.config import validate_pipeline

    judge = api_judge("http://127.0.0.1:9/v1")
    plain = validate_pipeline(pipeline(tmp_path, tiny_model, judges=[judge]))
    unchecked = validate_pipeline(
        pipeline(tmp_path, tiny_model, judges=[{**judge, "check_model": False}])
    )
    assert plain.hash() == unchecked.hash()
