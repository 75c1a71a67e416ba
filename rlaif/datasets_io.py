"""Writing ``datasets`` folders so that a crash never leaves a half-written one behind."""

from __future__ import annotations

import shutil
from pathlib import Path

from datasets import Dataset


def save_atomic(ds: Dataset, target: Path) -> None:
    """Write ``ds`` so that ``target`` is either absent or complete, never half-written."""
    tmp = fresh_dir(target.with_name(target.name + ".tmp"))
    ds.save_to_disk(str(tmp))
    replace_dir(tmp, target)


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
