"""Writing ``datasets`` folders so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset, Features, load_from_disk
from datasets.table import InMemoryTable

from rlaif.errors import writing


def save_atomic(ds: Dataset, target: Path) -> None:
    """Write ``ds`` so that ``target`` is either absent or complete, never half-written."""
    tmp = fresh_dir(target.with_name(target.name + ".tmp"))
    with writing(target, ds.data.nbytes * 2):
        ds.save_to_disk(str(tmp))
    replace_dir(tmp, target)


def save_shard(ds: Dataset, target: Path) -> None:
    """One parquet file, written whole or not at all: the unit a resumed stage reads back.
    The features go in the file's metadata, so :func:`load_shard` returns them unchanged."""
    tmp = target.with_name(target.name + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with writing(target, ds.data.nbytes * 2):
        pq.write_table(ds.with_format("arrow")[:].cast(ds.features.arrow_schema), tmp)
    os.replace(tmp, target)


def load_shard(path: Path) -> Dataset:
    return Dataset(InMemoryTable(pq.read_table(path)))


def fresh_dir(path: Path) -> Path:
    """An empty directory at ``path`` (whatever a crashed attempt left there is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def load_dir(path: Path) -> Dataset:
    """``load_from_disk`` that also reads back an empty dataset (``datasets`` saves one with
    no data file and then cannot load it): no held-out prompts, no pair to judge."""
    path = Path(path)
    if not any(path.glob("*.arrow")) and (path / "dataset_info.json").is_file():
        features = json.loads((path / "dataset_info.json").read_text())["features"]
        schema = Features.from_dict(features)
        return Dataset.from_dict({name: [] for name in schema}, features=schema)
    return load_from_disk(str(path))
