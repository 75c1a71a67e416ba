"""One canonical JSON hash, so config, cache and provenance hashes always agree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_hash(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def folder_hash(path: Path) -> str:
    """The content of a stage's output folder: every file's relative path and bytes, except
    a ``datasets`` folder's ``state.json`` (it holds a random fingerprint, not content)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        if file.name == "state.json":
            continue
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
