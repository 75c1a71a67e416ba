"""Pipeline configs for tests: one builder instead of a dict copied into every file."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

RULE = "judges_for_tests:prefer_shorter"


def deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, sharing nothing with either: a test that edits the
    config it got must not edit a constant such as ``ROUNDS_TRAIN`` for the tests after it."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def api_judge(url: str, **overrides: Any) -> dict[str, Any]:
    """An OpenAI-compatible judge on a loopback server, quick to give up in tests."""
    return {
        "name": "api",
        "backend": "openai",
        "model": "judge-model",
        "base_url": url,
        "api_key_env": None,
        "max_concurrency": 4,
        "timeout_s": 2.0,
        "max_retries": 1,
        **overrides,
    }


def pipeline(
    tmp_path: Path, model: Path, *, name: str = "t", judges: list[dict] | None = None, **changes
) -> dict[str, Any]:
    """A small pipeline over ``model`` (the tiny test model): a few prompts, two short answers
    each, judged by ``judges`` (default: the shorter-answer python rule), store in tmp."""
    base = {
        "name": name,
        "model": str(model),
        "output_dir": str(tmp_path / "outputs"),
        "prompts": {"limit": 10, "eval_size": 2},
        "sample": {"backend": "transformers", "n": 2, "max_new_tokens": 8, "dtype": "float32"},
        "judge": {
            "judges": judges
            or [{"backend": "python", "callable": "judges_for_tests:prefer_shorter"}],
            "cache": str(tmp_path / "judgments.sqlite"),
        },
        "aggregate": {"ties": "keep"},
    }
    return deep_update(base, changes)


ROUNDS_TRAIN = {"dpo": {"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-2}}


def rounds_config(tmp_path: Path, model: Path, **rounds: Any) -> dict[str, Any]:
    """:func:`pipeline` as two on-policy rounds of a two-step DPO (``rounds`` overrides)."""
    return pipeline(tmp_path, model, train=ROUNDS_TRAIN, rounds={"count": 2, **rounds})


def judges_only(tmp_path: Path, name: str, judges: dict[str, str]) -> dict[str, Any]:
    """A pipeline for commands that only judge (judge-eval, judge-audit): python judges
    ``{judge name: judges_for_tests function}``, outputs in ``tmp_path/out``."""
    return {
        "name": name,
        "output_dir": str(tmp_path / "out"),
        "judge": {
            "judges": [
                {"name": n, "backend": "python", "callable": f"judges_for_tests:{fn}"}
                for n, fn in judges.items()
            ]
        },
    }


def write(tmp_path: Path, config: dict[str, Any], file: str | None = None) -> Path:
    path = tmp_path / (file or f"{config['name']}.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def prompt_file(tmp_path: Path, prompts: list[str], name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


def prompt_pipeline(
    tmp_path: Path,
    model: Path,
    questions: list[str],
    *,
    judges: list[dict] | None = None,
    eval_size: int = 2,
    name: str = "t",
    **changes,
) -> Path:
    """:func:`pipeline` over every one of ``questions`` (written as a prompt file named by its
    content, so pipelines that differ only in their judges share sampling's fingerprint), saved
    as YAML; returns its path."""
    digest = hashlib.sha256("\n".join(questions).encode()).hexdigest()[:12]
    prompts = prompt_file(tmp_path, questions, name=f"prompts-{digest}.jsonl")
    source = {"source": str(prompts), "id_column": None, "limit": None, "eval_size": eval_size}
    config = pipeline(tmp_path, model, name=name, judges=judges, prompts=source, **changes)
    return write(tmp_path, config)


SECRET = "sk-live-0123456789abcdefSECRET"
"""The key in ``$RLAIF_TEST_SECRET`` for :func:`echoed_key_pipeline`."""


def echoed_key_pipeline(tmp_path: Path, model: Path, url: str) -> Path:
    """Three prompts whose every judgment gets a 401 from the loopback server at ``url``
    (``echo_key=True``), its body repeating the key sent (:data:`SECRET`, from the environment)."""
    return prompt_pipeline(
        tmp_path,
        model,
        [f"[[401]] Question {i}: how many legs does a spider have?" for i in range(3)],
        judges=[api_judge(url, api_key_env="RLAIF_TEST_SECRET")],
        eval_size=1,
    )


def write_prompts(path: Path, texts: list[str]) -> None:
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))


def nightly_prompts(tmp_path: Path) -> Path:
    """Ten questions in ``prompts.jsonl``, the source :func:`nightly_config` reads."""
    path = tmp_path / "prompts.jsonl"
    write_prompts(path, [f"Question number {i}: what is {i} plus {i}?" for i in range(10)])
    return path


def nightly_config(tmp_path: Path, tiny_model: Path, **extra) -> Path:
    config = {
        "name": "nightly-test",
        "model": str(tiny_model),
        "output_dir": str(tmp_path / "outputs"),
        "prompts": {"source": str(tmp_path / "prompts.jsonl"), "id_column": None, "eval_size": 2},
        "sample": {"backend": "transformers", "n": 2, "max_new_tokens": 6, "dtype": "float32"},
        "judge": {
            "judges": [
                {
                    "name": "short",
                    "backend": "python",
                    "callable": "judges_for_tests:prefer_shorter",
                }
            ]
        },
        "aggregate": {"ties": "keep"},
        "nightly": {"max_prompts": 4},
        **extra,
    }
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
