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
