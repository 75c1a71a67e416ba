"""``rlaif export``: a run's preferences and prompts in the layouts other trainers read as is,
for training past one node (OpenRLHF, verl) or anything that reads JSON lines.

- ``openrlhf``: ``preferences.jsonl`` with ``prompt`` (chat messages), ``chosen``,
  ``rejected`` (the assistant's message) and ``margin``, as ``train_dpo``/``train_rm`` read
  with ``--apply_chat_template --prompt_key prompt``; ``prompts.jsonl`` (``prompt`` as chat
  messages, ``label``) for ``train_ppo_ray``'s prompt and label keys.
- ``verl``: ``train.parquet`` and ``test.parquet`` (the held-out prompts) with verl's RL
  dataset columns: ``data_source``, ``prompt`` (chat messages), ``ability``,
  ``reward_model: {style, ground_truth}`` and ``extra_info: {split, index, prompt_id,
  question}`` (the plain prompt, which ``rlaif/integrations/verl_reward.py`` sends to
  ``rlaif serve-reward``).
- ``jsonl``: every column of the preferences and of both prompt splits, one object a line.

The OpenRLHF and verl folders also hold their trainers' recipes as scripts (``*.sh``, from
``rlaif/integrations/recipes.py``), and verl's the reward shim (``verl_reward.py``).

Every exported prompt carries a label, what a judged reward compares a response with: the
prompt's reference answer where the prompts have one, else an answer the sampled model gave it
in the run (a sample for a training prompt, evaluation's reference answer for a held-out one),
so ``serve-reward``'s pairwise judges always have something to compare against.
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
from rlaif.integrations import verl_reward
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
    )


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
    source = find_source(Path(path))
    out.mkdir(parents=True, exist_ok=True)
    recipes = partial(write_scripts, fmt, out, source.model, reward_url, source.reward_model)
    if fmt == "openrlhf":
        return [
            _jsonl(out / "preferences.jsonl", map(_openrlhf_pair, source.preferences)),
            _jsonl(out / "prompts.jsonl", _openrlhf_prompts(source)),
            *recipes(),
        ]
    if fmt == "verl":
        shim = out / "verl_reward.py"
        shutil.copyfile(verl_reward.__file__, shim)
        return [
            _parquet(out / "train.parquet", _verl_rows(source, source.train_prompts, "train")),
            _parquet(out / "test.parquet", _verl_rows(source, source.heldout, "test")),
            shim,
            *recipes(),
        ]
    return [
        _jsonl(out / "preferences.jsonl", source.preferences),
        _jsonl(out / "prompts.train.jsonl", source.train_prompts),
        _jsonl(out / "prompts.heldout.jsonl", source.heldout),
    ]


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
