"""What a check measures in the policy's answers themselves, against the SFT model's."""

from __future__ import annotations

import re

from rlaif.judging.audit import attack_marks

REFUSAL = re.compile(
    r"\b(I can(?:no|')t|I cannot|I'm (?:not able|unable)|I am (?:not able|unable)|I won't|"
    r"I will not|as an AI)\b",
    re.IGNORECASE,
)


def repetition(text: str) -> float:
    """The share of the answer's word 3-grams that repeat an earlier one."""
    words = text.split()
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def answer_measures(answers: list[str], tokens: list[int], sft_tokens: float) -> dict[str, float]:
    """Length ratio (the answers' tokens over the SFT model's), mean repetition, and the
    shares of answers that refuse and that carry the mark of a judge attack (``rlaif
    judge-audit``'s)."""
    n = len(answers)
    return {
        "length_ratio": round(sum(tokens) / max(sft_tokens, 1e-9), 4),
        "repetition": round(sum(map(repetition, answers)) / n, 4),
        "refusal": round(sum(bool(REFUSAL.search(a)) for a in answers) / n, 4),
        "attacks": round(sum(bool(attack_marks(a)) for a in answers) / n, 4),
    }
