"""Rule-based judges for the ``python`` backend: deterministic rubrics for demos and for
checking that training moves a policy toward what the judge asks for."""

from __future__ import annotations


def prefer_shorter(prompt: str, first: str, second: str) -> float:
    """P(first wins): the shorter answer wins; equal lengths tie."""
    if len(first) == len(second):
        return 0.5
    return 1.0 if len(first) < len(second) else 0.0


def fewer_e(prompt: str, first: str, second: str) -> float:
    """P(first wins): the answer with the smaller share of the letter 'e' wins."""

    def share(text: str) -> float:
        return text.lower().count("e") / max(len(text), 1)

    a, b = share(first), share(second)
    return 0.5 if a == b else (1.0 if a < b else 0.0)


def prefer_longer(prompt: str, first: str, second: str) -> float:
    """P(first wins): the longer answer wins; equal lengths tie (a stand-in for "complete
    answers" where the shorter-answer rule is the reward a policy games)."""
    return 1.0 - prefer_shorter(prompt, first, second)
