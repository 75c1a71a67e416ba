"""Data the tests share: pair rows as the pair stage writes them (for judging without
sampling), a small preference set, and where the human-labelled HH-RLHF sample lives."""

from __future__ import annotations

import os
from pathlib import Path

from datasets import Dataset

# ../shared/ beside the checkout; absent in a bare clone, where the tests that read it skip.
HH = Path(
    os.environ.get(
        "RLAIF_HH_RLHF",
        Path(__file__).resolve().parents[3]
        / "shared"
        / "data"
        / "hh-rlhf"
        / "harmless-base-test.jsonl.gz",
    )
)


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


def preferences(n: int = 4) -> Dataset:
    """``n`` conversational preference rows where the short answer is chosen."""
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Say hi {i}"}],
                "chosen": [{"role": "assistant", "content": "Hi."}],
                "rejected": [
                    {"role": "assistant", "content": "Hello there, how are you doing today?"}
                ],
                "p_chosen": 0.8,
                "margin": 0.6,
                "judges": ["j"],
            }
            for i in range(n)
        ]
    )
