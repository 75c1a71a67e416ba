"""Deterministic Python judges used by the tests (importable as ``judges_for_tests:...``)."""

from __future__ import annotations

CALLS: list[tuple[str, str, str]] = []


def prefer_shorter(prompt: str, first: str, second: str) -> float:
    """P(first wins): the shorter response wins; equal lengths are a coin flip."""
    CALLS.append((prompt, first, second))
    if len(first) == len(second):
        return 0.5
    return 0.9 if len(first) < len(second) else 0.1


def first_always(prompt: str, first: str, second: str) -> str:
    """A judge with pure position bias."""
    CALLS.append((prompt, first, second))
    return "A"


def explodes_on_x(prompt: str, first: str, second: str) -> float:
    if "x" in prompt:
        raise RuntimeError("cannot judge prompts with an x")
    return 0.7


def garbage(prompt: str, first: str, second: str) -> object:
    return "maybe?"


def slow_logged(prompt: str, first: str, second: str) -> float:
    """``prefer_shorter``, slowly, appending each call to $RLAIF_TEST_CALL_LOG (calls made in
    other processes can be counted)."""
    import json
    import os
    import time

    with open(os.environ["RLAIF_TEST_CALL_LOG"], "a") as log:
        log.write(json.dumps([prompt, first, second]) + "\n")
    time.sleep(0.05)
    return prefer_shorter(prompt, first, second)


def returns_too_much(prompt: str, first: str, second: str) -> float:
    return 1.7


def returns_c(prompt: str, first: str, second: str) -> str:
    return "C"


def returns_nan(prompt: str, first: str, second: str) -> float:
    return float("nan")


def raises(prompt: str, first: str, second: str) -> float:
    raise ValueError("no rules yet")


def overconfident(prompt: str, first: str, second: str) -> float:
    """Sides with the shorter answer at 0.99 whatever the gap: right 3 times in 4 on the
    calibration tests' labels, so its 0.99 is overconfident."""
    return 0.99 if len(first) < len(second) else 0.01


def first_biased_by_length(prompt: str, first: str, second: str) -> float:
    """Prefers the shorter answer, more surely the bigger the gap, and the first-shown one by
    0.25 whatever the answers: its position bias, measured over both orders, is exactly 0.25."""
    import math

    CALLS.append((prompt, first, second))
    return 0.75 + 0.2 * math.tanh((len(second) - len(first)) / 20)


def rank_shorter(prompt: str, responses: list[str]) -> list[float]:
    """Listwise: the shorter an answer, the higher it ranks (each call recorded)."""
    CALLS.append((prompt, *responses))
    return [-float(len(r)) for r in responses]


def rank_by_position(prompt: str, responses: list[str]) -> list[float]:
    """Listwise with pure position bias: the first answer shown ranks highest."""
    return [float(-i) for i in range(len(responses))]


def rank_too_few(prompt: str, responses: list[str]) -> list[float]:
    return [1.0]


def mixed_checklist(prompt: str) -> list[dict]:
    """A checklist of two checked items and one a judge must settle (each call recorded)."""
    CALLS.append(("checklist", prompt))
    return [
        {"requirement": "At most 20 characters", "check": "max_chars", "value": 20, "weight": 2},
        {"requirement": "Mentions 'tea'", "check": "contains", "value": "tea"},
        {"requirement": "Is polite"},
    ]


def checked_checklist(prompt: str) -> list[dict]:
    """A checklist whose items are all checked: no items judge needed."""
    asks_nothing = {"requirement": "Asks nothing back", "check": "excludes", "value": "?"}
    return [*mixed_checklist(prompt)[:2], asks_nothing]


def polite_items(prompt: str, response: str, items: list[str]) -> list[str]:
    """An items judge: 'yes' where the response says please (each call recorded)."""
    CALLS.append(("items", response, *items))
    return ["yes" if "please" in response else "no" for _ in items]


def empty_checklist(prompt: str) -> list:
    return []


def raises_in_checklist(prompt: str) -> list:
    raise RuntimeError("writer down")


def shorter_seen(prompt, first: str, second: str) -> float:
    """``prefer_shorter``, recording the prompt it was shown (a conversation stays a list)."""
    CALLS.append((prompt, first, second))
    return prefer_shorter(prompt, first, second)


def unreadable_on_x(prompt: str, first: str, second: str) -> object:
    """``prefer_shorter``, but an answer with no verdict in it for prompts holding an x."""
    if " x" in prompt:
        return "maybe?"
    return prefer_shorter(prompt, first, second)


def sure_only_when_far(prompt: str, first: str, second: str) -> float:
    """A cheap judge: the shorter answer where the lengths differ by 10 or more characters,
    else a lean toward whichever answer is shown first (unsure, and it flips with the order)."""
    if abs(len(first) - len(second)) >= 10:
        return 0.9 if len(first) < len(second) else 0.1
    return 0.55
