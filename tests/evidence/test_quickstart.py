"""rlaif as a user gets it: the wheel built from this checkout, installed into a fresh virtualenv
outside the repository, ``rlaif init`` and the starter project (the shipped quickstart) run end
to end on the real embedded model, scaled down through --set."""

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

from datasets import load_from_disk

from rlaif.models.loading import DEFAULT_MODEL, resolve_model
from rlaif.rubrics import BUILTIN, load_rubric
from rlaif.run.run_dir import read_manifest

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


def fresh_venv(root: Path) -> Path:
    """A new virtualenv whose only packages are this environment's (linked, so nothing
    downloads), never rlaif itself: what imports as rlaif there is what the wheel installs."""
    venv.create(root / "venv", with_pip=False)  # its own old setuptools would shadow ours
    deps = root / "deps" / "site-packages"  # dill pickles modules from elsewhere by value
    deps.mkdir(parents=True)
    here = Path(sysconfig.get_paths()["purelib"])
    for entry in here.iterdir():
        if not entry.name.startswith(("rlaif", "_editable_impl_rlaif", "_virtualenv")):
            (deps / entry.name).symlink_to(entry)
    site = next((root / "venv" / "lib").glob("python*/site-packages"))
    (site / "deps.pth").write_text(f"{deps}\n")
    return root / "venv" / "bin"


def test_the_wheel_installs_and_its_starter_project_runs_end_to_end(
    tmp_path, repo_root, embedded_model
):
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(repo_root)]
    built = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheel = next(dist.glob("rlaif-*.whl"))
    # every shipped rubric and pipeline, kept once at the top of the checkout, is in both
    shipped = {
        str(p.relative_to(repo_root))
        for folder in ("rubrics", "pipelines")
        for p in (repo_root / folder).rglob("*")
        if p.is_file()
    }
    assert len(shipped) > 20
    with zipfile.ZipFile(wheel) as whl:
        assert {n.removeprefix("rlaif/_shipped/") for n in whl.namelist()} >= shipped
    with tarfile.open(next(dist.glob("rlaif-*.tar.gz"))) as sdist:
        assert {n.split("/", 1)[-1] for n in sdist.getnames()} >= shipped
    bin_dir = fresh_venv(tmp_path)
    # --no-index: every dependency the wheel names must already be met, in range, by the
    # linked environment; nothing is fetched
    pip = [sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--no-index"]
    pip += ["-q", wheel]
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]

    home = tmp_path / "home"  # outside the repository: no ./rubrics, no checkout on the path
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def rlaif(*args: str, cwd: Path = home) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [bin_dir / "rlaif", *args], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    where = subprocess.run(
        [bin_dir / "python", "-c", "import rlaif; print(rlaif.__file__)"],
        cwd=home, env=env, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(tmp_path / "venv")), where
    assert rlaif("--version").stdout.strip() == "rlaif 0.1.0"
    listed = {line.split()[0] for line in rlaif("rubrics", "list").stdout.splitlines()}
    assert listed == {p.stem for p in BUILTIN.glob("*.jinja")}

    names = "from rlaif.pipelines import builtin_pipelines as b; print(*sorted(b()))"
    in_wheel = subprocess.run(
        [bin_dir / "python", "-c", names], cwd=home, env=env, capture_output=True, text=True
    ).stdout.split()
    assert in_wheel == sorted(p.stem for p in (repo_root / "pipelines").glob("*.yaml"))
    planned = rlaif("run", "rule_dpo", "--dry-run", "--run-dir", str(home / "planned"))
    assert "shorter" in planned.stdout  # rule_dpo's judge, read from the wheel's copy

    rlaif("init", "my-project")
    project = home / "my-project"
    assert (project / "rubrics" / "my_rubric.jinja").read_text() == (
        BUILTIN / "helpful_harmless.jinja"
    ).read_text()
    assert "nightly pipeline.yaml" in (project / "crontab.txt").read_text()
    rubric = project / "rubrics" / "my_rubric.jinja"
    rubric.write_text(rubric.read_text() + "{# edited by the team #}\n")
    sets = [arg for item in SMALL for arg in ("--set", item)]
    done = rlaif("run", "pipeline.yaml", *sets, cwd=project)
    assert "evaluation: policy vs SFT win rate" in done.stdout
    run_dir = next((project / "outputs" / "my-project").iterdir())
    mine = {json.loads(line)["prompt"] for line in (project / "prompts.jsonl").open()}
    asked = load_from_disk(str(run_dir / "prompts" / "train"))["prompt"]
    assert asked and set(asked) <= mine
    assert list(read_manifest(run_dir)["rubrics"].values()) == [load_rubric(str(rubric)).sha256]
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
