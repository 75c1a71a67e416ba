"""Rule-based judges for the ``python`` backend: deterministic rubrics for demos and for
checking that training moves a policy toward what the judge asks for."""

from __future__ import annotations

from rlaif.chat import Prompt, last_turn


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


def rank_shorter(prompt: str, responses: list[str]) -> list[float]:
    """Listwise ``prefer_shorter``: the shorter an answer, the higher it ranks."""
    return [-float(len(r)) for r in responses]


def rank_fewer_e(prompt: str, responses: list[str]) -> list[float]:
    """Listwise ``fewer_e``: the smaller an answer's share of the letter 'e', the higher."""
    return [-r.lower().count("e") / max(len(r), 1) for r in responses]


def brevity_checklist(prompt: Prompt) -> list[dict]:
    """A checklist writer (``mode: checklist``) whose items are all checked, not asked: a
    brief answer (the shorter, the more length items it meets) that ends its sentence and
    stays on the prompt's subject (its longest word)."""
    subject = max(last_turn(prompt).split(), key=len).strip("?.,!;:'\"").lower()
    return [
        *(
            {"requirement": f"At most {n} characters", "check": "max_chars", "value": n}
            for n in (160, 120, 90, 60, 40)
        ),
        {"requirement": "Ends a sentence", "check": "regex", "value": r"[.!?]\s*$"},
        {"requirement": f"Mentions '{subject}'", "check": "contains", "value": subject},
    ]
