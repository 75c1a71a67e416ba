"""The shipped quickstart pipeline on the real embedded model, scaled down through --set."""

import os
import subprocess
import sys

from datasets import load_from_disk

from rlaif.models import DEFAULT_MODEL, resolve_model

SMALL = [
    "prompts.limit=6",
    "prompts.eval_size=2",
    "sample.n=2",
    "sample.max_new_tokens=16",
    "train.max_steps=2",
    "evaluate.max_new_tokens=16",
    "evaluate.bootstrap=200",
]


def test_gguf_converts_once_to_safetensors(tmp_path, monkeypatch):
    monkeypatch.setenv("RLAIF_CACHE", str(tmp_path))
    path = resolve_model(DEFAULT_MODEL)
    assert path == tmp_path / "models" / DEFAULT_MODEL
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert "quantization_config" not in (path / "config.json").read_text()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model(DEFAULT_MODEL) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]


def test_quickstart_pipeline_end_to_end(tmp_path, repo_root, embedded_model):
    sets = [arg for item in [*SMALL, f"output_dir={tmp_path}"] for arg in ("--set", item)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif.cli",
            "run",
            str(repo_root / "pipelines/quickstart.yaml"),
            *sets,
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evaluation: policy vs SFT win rate" in done.stdout
    run_dir = next((tmp_path / "quickstart").iterdir())
    prefs = load_from_disk(str(run_dir / "preferences"))
    assert len(prefs) > 0

    from trl import DPOConfig, DPOTrainer

    trainer = DPOTrainer(
        model=str(embedded_model),
        train_dataset=prefs,
        args=DPOConfig(
            output_dir=str(tmp_path / "dpo"),
            max_steps=1,
            per_device_train_batch_size=2,
            report_to=[],
            use_cpu=True,
        ),
    )
    assert trainer.train().global_step == 1
