"""Pair rows as the pair stage writes them, for tests that judge without sampling."""

from __future__ import annotations

from datasets import Dataset


def pairs(prompts: list[str]) -> Dataset:
    """One pair per prompt: a long answer (a) against a short one (b)."""
    n = len(prompts)
    return Dataset.from_dict(
        {
            "pair_id": [f"p{i}:0-1" for i in range(n)],
            "prompt_id": [f"p{i}" for i in range(n)],
            "prompt": prompts,
            "index_a": [0] * n,
            "index_b": [1] * n,
            "response_a": ["a long answer here"] * n,
            "response_b": ["short"] * n,
        }
    )
