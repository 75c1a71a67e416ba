"""One canonical JSON hash, so config, cache and provenance hashes always agree."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
