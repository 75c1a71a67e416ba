"""What every tier shares: its marker from its folder, skips for what a test needs and this
machine lacks, and the expensive fixtures built once per test run (the embedded model, a tiny
random model, a vLLM server). Helpers live in ``tests/support/``."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent / "support"))

from cli_runner import VLLM_ENV  # noqa: E402

TIERS = ("fast", "integration", "evidence")


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


# What a marker needs, and the reason a test that carries it is skipped without it.
NEEDS = {
    "vllm": (lambda: importlib.util.find_spec("vllm") is not None, "vllm is not installed"),
    "ray": (lambda: importlib.util.find_spec("ray") is not None, "ray is not installed"),
    "gpu": (_has_gpu, "no CUDA device here"),
}


def pytest_collection_modifyitems(config, items):
    """Each test carries its tier's marker (``-m integration``), and one that needs what this
    machine lacks is skipped saying what."""
    root = Path(__file__).parent
    available: dict[str, bool] = {}
    for item in items:
        tier = item.path.relative_to(root).parts[0]
        if tier in TIERS:
            item.add_marker(tier)
        for name, (check, reason) in NEEDS.items():
            if item.get_closest_marker(name) is None:
                continue
            if name not in available:
                available[name] = check()
            if not available[name]:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The real SmolLM2-135M-Instruct, converted once into the user's rlaif cache."""
    from rlaif.models.loading import DEFAULT_MODEL, resolve_model

    return Path(resolve_model(DEFAULT_MODEL))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, embedded_model) -> Path:
    """A 2-layer random Llama with the real tokenizer and chat template."""
    from rlaif.testing.tiny_model import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-model"), embedded_model)


@pytest.fixture
def pipeline_yaml(tmp_path, tiny_model) -> Path:
    """The whole loop on the tiny model: a python rule and a tiny transformers judge."""
    config = {
        "name": "tiny",
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "outputs"),
        "prompts": {"limit": 8, "eval_size": 3},
        "sample": {"backend": "transformers", "n": 3, "max_new_tokens": 12, "dtype": "float32"},
        "judge": {
            "judges": [
                {
                    "name": "rule",
                    "backend": "python",
                    "callable": "judges_for_tests:prefer_shorter",
                },
                {
                    "name": "tiny",
                    "backend": "transformers",
                    "model": str(tiny_model),
                    "rubric": "concise",
                    "dtype": "float32",
                },
            ]
        },
        "aggregate": {"ties": "keep"},
        "train": {"max_steps": 2, "per_device_train_batch_size": 2},
        "evaluate": {"max_new_tokens": 8, "bootstrap": 200},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def vllm_server(embedded_model, tmp_path_factory):
    """A real vLLM server (the CPU build) on 127.0.0.1 serving the embedded model as ``smol``,
    started once per test run: eager, since compiling at start costs minutes on a CPU, and
    float32 like the tests' offline engines, so greedy answers compare."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                str(embedded_model),
                "--served-model-name",
                "smol",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--max-model-len",
                "2048",
                "--gpu-memory-utilization",
                "0.5",
                "--enforce-eager",
                "--dtype",
                "float32",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **VLLM_ENV},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited: {log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vLLM server did not start: {log.read_text()[-3000:]}")
                time.sleep(2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)
