"""The reward file OpenRLHF loads (``rlaif.rewards.openrlhf``), called the way its executor
calls it: from every thread of its event loop's pool at the same time."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from configs_for_tests import pipeline, write

import rlaif.models.loading as loading
from rlaif.rewards import openrlhf, service


@pytest.fixture
def fresh_process(monkeypatch, tmp_path, tiny_model):
    """A worker process that has not built its reward yet, its pipeline in $RLAIF_PIPELINE."""
    monkeypatch.setenv(service.PIPELINE_ENV, str(write(tmp_path, pipeline(tmp_path, tiny_model))))
    monkeypatch.setattr(service, "_process", None)
    monkeypatch.setattr(openrlhf, "_text", None)
    yield
    if service._process is not None:
        service._process.close()


def test_threads_calling_at_once_load_the_policy_tokenizer_once(fresh_process, monkeypatch):
    loads = []
    real = loading.load_tokenizer

    def counted(*args, **kwargs):
        loads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(loading, "load_tokenizer", counted)
    start = threading.Barrier(16)

    def call(_):
        start.wait()
        return openrlhf._service()

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(call, range(16)))
    assert len(loads) == 1
    assert len({id(text) for _, text in got}) == 1 and len({id(s) for s, _ in got}) == 1
