"""Stage 2: pairs of responses to the same prompt, to be compared by the judges."""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING

from datasets import Dataset

from rlaif.config import PairConfig
from rlaif.judging.schema import pair_columns

if TYPE_CHECKING:
    from rlaif.run.context import Run


def step(run: Run) -> dict:
    out = pair(run.input("sample"), run.cfg.pair)
    run.save("pair", out)
    return {"pairs": len(out)}


def pair(samples: Dataset, cfg: PairConfig) -> Dataset:
    """``all_pairs`` takes every unordered pair; ``random_pairs`` takes ``k`` of them per prompt."""
    rng = random.Random(cfg.seed)
    columns = pair_columns(samples.column_names)
    rows: dict[str, list] = {c: [] for c in columns}
    for record in samples:
        responses = record["responses"]
        candidates = [
            (i, j)
            for i, j in itertools.combinations(range(len(responses)), 2)
            if not (cfg.skip_identical and responses[i].strip() == responses[j].strip())
            and _balanced(responses[i], responses[j], cfg.max_length_ratio)
        ]
        if cfg.strategy == "random_pairs" and len(candidates) > cfg.k:
            candidates = sorted(rng.sample(candidates, cfg.k))
        for i, j in candidates:
            rows["pair_id"].append(f"{record['prompt_id']}:{i}-{j}")
            rows["prompt_id"].append(record["prompt_id"])
            rows["prompt"].append(record["prompt"])
            rows["index_a"].append(i)
            rows["index_b"].append(j)
            rows["response_a"].append(responses[i])
            rows["response_b"].append(responses[j])
            if "reference" in rows:
                rows["reference"].append(record["reference"])
    return Dataset.from_dict(rows)


def _balanced(a: str, b: str, max_ratio: float | None) -> bool:
    if max_ratio is None:
        return True
    short, long = sorted((len(a), len(b)))
    return long <= max_ratio * max(short, 1)
