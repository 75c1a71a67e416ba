"""Per-prompt checklists: the yes/no requirements a judge writes for a prompt, and the checks
that settle an item without asking anyone.

A checklist is a list of items, each a requirement an answer meets or not, with a weight. An
item may name a ``check`` (with its ``value``): a deterministic test of the answer's text
(its length, a required word, its format), run here for free; any other item is asked of a
judge (a ``checklist_items`` rubric). An answer's score is the weighted share of the items it
meets. Only the checks below can be named, by a python writer or a model alike: a checklist
never names code to import.

A ``regex`` item runs on RE2 (``google-re2``), whose time grows linearly with the answer, so a
pattern written by a model and an answer written by the policy cannot hang a run however they
are made; the constructs that need backtracking (backreferences, lookaround) are refused when
the checklist is read, naming the item.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2


def _words(text: str) -> int:
    return len(text.split())


@functools.lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (linear time); ``ValueError`` saying why it cannot be."""
    options = re2.Options()
    options.log_errors = False  # the error is raised, not also printed
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"value is not a regex RE2 runs in linear time ({reason}; backreferences and "
            "lookaround are not supported)"
        ) from None


def _is_json(text: str, _: Any) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


CHECKS: dict[str, tuple[Callable[[str, Any], bool], type | None]] = {
    "max_chars": (lambda text, n: len(text.strip()) <= n, int),
    "min_chars": (lambda text, n: len(text.strip()) >= n, int),
    "max_words": (lambda text, n: _words(text) <= n, int),
    "min_words": (lambda text, n: _words(text) >= n, int),
    "contains": (lambda text, word: word.lower() in text.lower(), str),
    "excludes": (lambda text, word: word.lower() not in text.lower(), str),
    "regex": (lambda text, pattern: compile_regex(pattern).search(text) is not None, str),
    "json": (_is_json, None),
}
"""The checks an item may name: check name -> (test(answer, value), the value's type; None:
no value)."""
MAX_ITEMS = 8
ITEM_FIELDS = ("requirement", "text", "weight", "check", "value")
"""What an item may hold; a person's edit naming anything else is refused (a typo such as
``wieght`` would otherwise be dropped without a word)."""


@dataclass(frozen=True)
class Item:
    """One requirement: met or not, worth ``weight``; settled by ``check`` when it names one."""

    text: str
    weight: float = 1.0
    check: str | None = None
    value: Any = None

    def met_by(self, answer: str) -> bool:
        """Whether ``answer`` meets a checked item."""
        test, _ = CHECKS[str(self.check)]
        return bool(test(answer, self.value))


def read_items(
    data: object, *, min_items: int = 1, max_items: int = MAX_ITEMS, strict: bool = False
) -> list[Item]:
    """A checklist from its JSON form: a list of items, each a requirement text or a mapping
    with ``requirement`` (or ``text``) and optionally ``weight``, ``check`` and ``value``.
    ``strict`` (a person's edit) also refuses fields an item cannot hold. Raises
    ``ValueError`` saying which item is wrong and how."""
    if not isinstance(data, list):
        raise ValueError(f"expected a list of items, got {type(data).__name__}")
    if not min_items <= len(data) <= max_items:
        raise ValueError(f"{len(data)} items; a checklist has {min_items} to {max_items}")
    return [_item(n, raw, strict) for n, raw in enumerate(data, 1)]


def _item(n: int, raw: object, strict: bool) -> Item:
    if isinstance(raw, str):
        raw = {"requirement": raw}
    if not isinstance(raw, dict):
        raise ValueError(f"item {n}: expected a requirement or a mapping, got {raw!r}")
    unknown = sorted(set(raw) - set(ITEM_FIELDS))
    if strict and unknown:
        raise ValueError(
            f"item {n}: unknown field(s) {', '.join(map(repr, unknown))} (an item holds: "
            f"{', '.join(ITEM_FIELDS)})"
        )
    text = raw.get("requirement", raw.get("text"))
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"item {n}: no requirement text")
    weight = raw.get("weight", 1.0)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or weight <= 0
    ):
        raise ValueError(f"item {n}: weight must be a finite positive number, got {weight!r}")
    check, value = raw.get("check"), raw.get("value")
    if check in (None, "none"):
        check, value = None, None  # a judge's item, whatever value came with it
    else:
        if check not in CHECKS:
            raise ValueError(f"item {n}: unknown check {check!r} (checks: {', '.join(CHECKS)})")
        wanted = CHECKS[check][1]
        if wanted is int and isinstance(value, str) and value.strip().isdigit():
            value = int(value)  # a model's structured answer gives every value as text
        if wanted is None:
            value = None
        if wanted is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"item {n}: check {check!r} needs a whole number value of 0 or more")
        if wanted is str and not (isinstance(value, str) and value):
            raise ValueError(f"item {n}: check {check!r} needs a text value")
        if check == "regex":
            try:
                compile_regex(value)
            except ValueError as exc:
                raise ValueError(f"item {n}: {exc}") from None
    return Item(text.strip(), float(weight), check, value)


def items_json(items: list[Item]) -> str:
    """The stored form of a checklist (what :func:`read_items` reads back)."""
    return json.dumps(
        [
            {"requirement": i.text, "weight": i.weight}
            | ({"check": i.check, "value": i.value} if i.check is not None else {})
            for i in items
        ]
    )


def weighted_share(items: list[Item], met: list[bool]) -> float:
    """The score of an answer: the weight of the items it meets over the weight of all."""
    total = sum(i.weight for i in items)
    return sum(i.weight for i, ok in zip(items, met, strict=True) if ok) / total


def read_met(data: object, count: int) -> list[bool]:
    """A judge's answers on ``count`` items, in order: ``yes``/``no`` or booleans."""
    if not isinstance(data, list) or len(data) != count:
        raise ValueError(f"expected {count} answers, one per item, got {data!r}")
    out = []
    for answer in data:
        if isinstance(answer, str) and answer.strip().lower() in ("yes", "no"):
            answer = answer.strip().lower() == "yes"
        if not isinstance(answer, bool):
            raise ValueError(f"expected 'yes' or 'no' for each item, got {answer!r}")
        out.append(answer)
    return out
