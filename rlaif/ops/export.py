"""``rlaif export``: a run's preferences and prompts in the layouts other trainers read as is,
for training past one node (OpenRLHF, verl) or anything that reads JSON lines.

- ``openrlhf``: ``preferences.jsonl`` with ``prompt`` (chat messages), ``chosen``,
  ``rejected`` (the assistant's message) and ``margin``, as ``train_dpo``/``train_rm`` read
  with ``--apply_chat_template --prompt_key prompt``; ``prompts.jsonl`` (``prompt`` as chat
  messages, ``label``) for ``train_ppo_ray``'s prompt and label keys.
- ``verl``: ``train.parquet`` and ``test.parquet`` (the held-out prompts) with verl's RL
  dataset columns: ``data_source``, ``prompt`` (chat messages), ``ability``,
  ``reward_model: {style, ground_truth}`` and ``extra_info: {split, index, prompt_id,
  question}`` (the plain prompt, which the reward adapters send to the judges).
- ``jsonl``: every column of the preferences and of both prompt splits, one object a line.

The OpenRLHF and verl folders also hold their trainers' recipes as scripts (``*.sh``, from
``rlaif/integrations/recipes.py``, paths relative to the folder), the reward files both
trainers load (``rlaif_http_reward.py``: ``rlaif serve-reward`` over HTTP, standard library
only; ``rlaif_reward.py``: the reward in process, where rlaif is installed), and the run's
reward model when it trained one: the folder is all a cluster needs.

Every exported prompt carries a label, what a judged reward compares a response with: the
prompt's reference answer where the prompts have one, else an answer the sampled model gave it
in the run (a sample for a training prompt, evaluation's reference answer for a held-out one).
Where a prompt has neither and the run's reward compares answers (a pairwise or listwise judge),
the export is refused with the reason: the trainer's validation would get errors instead.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from datasets import Dataset

from rlaif.chat import Prompt, chat, prompts_of
from rlaif.errors import ConfigError
from rlaif.integrations import http_reward
from rlaif.integrations.recipes import write_scripts
from rlaif.models.loading import DEFAULT_MODEL
from rlaif.run.datasets_io import load_dir
from rlaif.run.run_dir import RunDir, read_chain

FORMATS = ("openrlhf", "verl", "jsonl")


@dataclass(frozen=True)
class Source:
    """What is exported, found from a run directory, a rounds chain (its last round) or a
    nightly folder (the newest cumulative version and the frozen held-out prompts)."""

    preferences: Dataset
    train_prompts: Dataset
    heldout: Dataset
    name: str
    system_prompt: str | None
    model: str
    """The SFT model, which the recipes train from."""
    reward_model: Path | None
    """The reward model the run trained (``train.method: rm_ppo``), for verl's recipe."""
    answers: dict[str, str]
    """An answer the sampled model gave each prompt (by ``prompt_id``), where the run has one."""
    compares: bool = True
    """Whether the run's reward compares answers with a label (a pairwise or listwise judge)."""

    def label(self, prompts: Dataset, i: int) -> str:
        """The prompt's reference answer, else the model's answer; '' when the run has neither."""
        if "reference" in prompts.column_names and prompts[i]["reference"]:
            return prompts[i]["reference"]
        return self.answers.get(prompts[i]["prompt_id"], "")


def find_source(path: Path) -> Source:
    if (path / "ledger.sqlite").exists() and not RunDir(path).has_manifest():
        return _nightly(path)
    if (chain := read_chain(path)) is not None:
        rounds = chain["rounds"]
        if not rounds:
            raise ConfigError(f"{path}: no round has finished yet; nothing to export")
        first = RunDir(Path(rounds[0]["run_dir"]))  # the SFT model sampled the first round
        path = Path(rounds[-1]["run_dir"])
    else:
        first = RunDir(path)
    run = RunDir(path)
    manifest = run.read_manifest()
    if not run.output("aggregate").exists():
        raise ConfigError(f"{path}: no preferences yet (run the aggregate stage first)")
    return Source(
        load_dir(run.output("aggregate")),
        load_dir(run.prompts("train")),
        load_dir(run.prompts("heldout")),
        manifest.get("pipeline", path.name),
        manifest.get("config", {}).get("sample", {}).get("system_prompt"),
        first.read_manifest().get("config", {}).get("model", DEFAULT_MODEL),
        _reward_model(run),
        # the first round's answers win: the SFT model gave them
        {**_answers(run), **_answers(first)} if first.path != run.path else _answers(run),
        _compares(manifest.get("config")),
    )


def _compares(config: dict | None) -> bool:
    """Whether the reward a run's config describes compares answers with a label: a judge
    component (or, without components, the first judge) with a pairwise or listwise rubric."""
    from rlaif.config import validate_pipeline
    from rlaif.rubrics import load_rubric

    if not config:
        return True
    cfg = validate_pipeline(config)
    judges = {spec.name: spec for spec in cfg.judge.judges}
    named = [c.judge for c in cfg.reward.components if c.kind == "judge"]
    if not cfg.reward.components and cfg.judge.judges:
        named = [cfg.judge.judges[0].name]
    for name in named:
        spec = judges[name]
        rubric = getattr(spec, "rubric", None)
        mode = load_rubric(rubric).mode if rubric else spec.mode
        if mode in ("pairwise", "listwise"):
            return True
    return False


def _reward_model(run: RunDir) -> Path | None:
    folder = run.path / "train" / "reward_model"
    return folder if folder.is_dir() else None


def _answers(run: RunDir) -> dict[str, str]:
    """The first sampled answer to each training prompt and evaluation's reference answer to
    each held-out one, by ``prompt_id``."""
    found: dict[str, str] = {}
    for stage, column, first in (
        ("sample", "responses", True),
        ("evaluate", "reference_response", False),
    ):
        folder = run.output(stage)
        if not folder.exists():
            continue
        rows = load_dir(folder)
        if "prompt_id" not in rows.column_names or column not in rows.column_names:
            continue
        for prompt_id, answer in zip(rows["prompt_id"], rows[column], strict=True):
            text = (answer[0] if answer else None) if first else answer
            if text:
                found.setdefault(prompt_id, text)
    return found


def _nightly(root: Path) -> Source:
    from rlaif.ops.nightly import latest_preferences

    latest = latest_preferences(root)
    if latest is None:
        raise ConfigError(f"{root}: no night has published preferences yet; nothing to export")
    nights = sorted(p for p in root.iterdir() if RunDir(p).has_manifest())
    manifest = RunDir(nights[-1]).read_manifest()
    preferences = load_dir(latest)
    answers: dict[str, str] = {}
    for night in nights:
        answers = {**_answers(RunDir(night)), **answers}
    return Source(
        preferences,
        _prompts_of(preferences),
        load_dir(root / "heldout"),
        manifest.get("pipeline", root.parent.name),
        manifest.get("config", {}).get("sample", {}).get("system_prompt"),
        manifest.get("config", {}).get("model", DEFAULT_MODEL),
        _reward_model(RunDir(nights[-1])),
        answers,
        _compares(manifest.get("config")),
    )


def _prompts_of(preferences: Dataset) -> Dataset:
    """The distinct prompts behind a cumulative preference dataset."""
    seen: dict[str, Prompt] = {}
    prompts = prompts_of(preferences["prompt"])
    for prompt_id, prompt in zip(preferences["prompt_id"], prompts, strict=True):
        seen.setdefault(prompt_id, prompt)
    return Dataset.from_dict({"prompt_id": list(seen), "prompt": list(seen.values())})


def export(
    path: Path, fmt: str, out: Path, reward_url: str = "http://127.0.0.1:8765"
) -> list[Path]:
    """Write ``path``'s data in format ``fmt`` under ``out``; returns the files written.

    The OpenRLHF and verl formats also get their trainers' recipes as scripts
    (``rlaif.integrations.recipes``) that read these files, rewarded by ``rlaif serve-reward``
    at ``reward_url``; verl's gets the reward shim beside them, so the folder is all a cluster
    needs."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    try:
        reward_url = http_reward.base_url(reward_url)
    except ValueError as exc:
        raise ConfigError(f"--reward-url: {exc}") from None
    source = find_source(Path(path))
    if fmt != "jsonl":
        _check_labels(source)
    out.mkdir(parents=True, exist_ok=True)
    recipes = partial(write_scripts, fmt, out, source.model, reward_url, source.reward_model)
    if fmt == "openrlhf":
        return [
            _jsonl(out / "preferences.jsonl", map(_openrlhf_pair, source.preferences)),
            _jsonl(out / "prompts.jsonl", _openrlhf_prompts(source)),
            *_reward_files(out),
            *recipes(),
        ]
    if fmt == "verl":
        return [
            _parquet(out / "train.parquet", _verl_rows(source, source.train_prompts, "train")),
            _parquet(out / "test.parquet", _verl_rows(source, source.heldout, "test")),
            *_reward_files(out),
            *recipes(),
        ]
    return [
        _jsonl(out / "preferences.jsonl", source.preferences),
        _jsonl(out / "prompts.train.jsonl", source.train_prompts),
        _jsonl(out / "prompts.heldout.jsonl", source.heldout),
    ]


IN_PROCESS = '''"""rlaif's reward in process (rlaif installed on the trainer's workers;
RLAIF_PIPELINE names the pipeline YAML): verl's compute_score, compute_score_batch and
compute_score_sync, OpenRLHF's reward_func."""

from rlaif.rewards.openrlhf import reward_func  # noqa: F401
from rlaif.rewards.verl import compute_score, compute_score_batch, compute_score_sync  # noqa: F401
'''


def _reward_files(out: Path) -> list[Path]:
    """The reward files the trainers load: over HTTP (standard library only), in process."""
    http = out / "rlaif_http_reward.py"
    shutil.copyfile(http_reward.__file__, http)
    local = out / "rlaif_reward.py"
    local.write_text(IN_PROCESS, encoding="utf-8")
    return [http, local]


def _check_labels(source: Source) -> None:
    """Refuse an export whose prompts lack the labels its reward compares answers with."""
    if not source.compares:
        return
    for split, prompts in (("training", source.train_prompts), ("held-out", source.heldout)):
        bare = [i for i in range(len(prompts)) if not source.label(prompts, i)]
        if bare:
            raise ConfigError(
                f"{len(bare)} {split} prompt(s) have no label (a reference answer, or an "
                "answer the run sampled or evaluated), and the run's reward compares answers "
                "with one, so the trainer would get errors for them. Run the evaluate stage "
                "(its reference answers label the held-out prompts), set "
                "prompts.reference_column, or reward with a pointwise or checklist judge"
            )


def _openrlhf_pair(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("prompt", "chosen", "rejected", "margin")}


def _openrlhf_prompts(source: Source) -> list[dict[str, Any]]:
    prompts = source.train_prompts
    return [
        {
            "prompt": chat(prompt, source.system_prompt),
            "prompt_id": prompt_id,
            "label": source.label(prompts, i),
        }
        for i, (prompt_id, prompt) in enumerate(
            zip(prompts["prompt_id"], prompts["prompt"], strict=True)
        )
    ]


def _verl_rows(source: Source, prompts: Dataset, split: str) -> list[dict[str, Any]]:
    """verl's RL dataset row: a model scores the answers (``style: model``: a reward model
    or a judge); ``ground_truth`` is the prompt's label (see the module docstring)."""
    n = len(prompts)
    categories = prompts["category"] if "category" in prompts.column_names else [None] * n
    rows = zip(prompts["prompt_id"], prompts["prompt"], categories, strict=True)
    return [
        {
            "data_source": f"rlaif/{source.name}",
            "prompt": chat(prompt, source.system_prompt),
            "ability": category or "general",
            "reward_model": {"style": "model", "ground_truth": source.label(prompts, i)},
            "extra_info": {"split": split, "index": i, "prompt_id": prompt_id, "question": prompt},
        }
        for i, (prompt_id, prompt, category) in enumerate(rows)
    ]


def _jsonl(path: Path, rows) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    Dataset.from_list(rows).to_parquet(str(path))
    return path
