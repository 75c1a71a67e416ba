"""Turn a judge's raw answer into a verdict, the same way for every backend.

Anything that cannot be read becomes an ``invalid`` verdict with the raw text kept:
never a dropped row, never a guessed label.
"""

from __future__ import annotations

import json
import math
import re

from rlaif.judges.base import Verdict
from rlaif.rubrics import Rubric
from rlaif.rubrics.checklists import items_json, read_items, read_met
from rlaif.rubrics.rubric import CHECKLIST_MODES

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def from_label_logprobs(rubric: Rubric, text: str, top: dict[str, float] | None) -> Verdict:
    """From the first token's top logprobs; a label missing from the top-k gets the smallest
    listed probability, an upper bound on its true value."""
    if not top:
        return Verdict(status="invalid", raw_output=text, error="no logprobs in the response")
    probs: dict[str, float] = {}
    for token, logprob in top.items():
        label = token.strip()
        if label in rubric.labels:
            probs[label] = probs.get(label, 0.0) + math.exp(logprob)
    if not probs:
        return Verdict(
            status="invalid",
            raw_output=text,
            error=f"no label of {list(rubric.labels)} among the top tokens",
        )
    floor = math.exp(min(top.values()))
    return from_label_probabilities(rubric, text, [probs.get(x, floor) for x in rubric.labels])


def from_label_probabilities(rubric: Rubric, text: str, probs: list[float]) -> Verdict:
    """Pairwise: P(first) normalised over the two labels; pointwise: the expected score;
    listwise: each position's probability of being the best answer."""
    mass = sum(probs)
    normalised = [p / mass for p in probs] if mass > 0 else [1.0 / len(probs)] * len(probs)
    best = rubric.labels[max(range(len(probs)), key=probs.__getitem__)]
    if rubric.mode == "listwise":
        ranking = json.dumps({"probs": [round(p, 6) for p in normalised]})
        return Verdict(status="ok", raw_output=text, verdict=best, ranking=ranking, label_mass=mass)
    if rubric.mode == "pointwise":
        score = sum(p * s for p, s in zip(normalised, rubric.scores, strict=True))
        return Verdict(status="ok", raw_output=text, verdict=best, score=score, label_mass=mass)
    verdict = rubric.labels[0] if normalised[0] >= 0.5 else rubric.labels[1]
    return Verdict(
        status="ok", raw_output=text, verdict=verdict, p_first=normalised[0], label_mass=mass
    )


def from_json(rubric: Rubric, text: str) -> Verdict:
    try:
        data = json.loads(_FENCE.sub("", text.strip()))
    except json.JSONDecodeError as exc:
        return Verdict(status="invalid", raw_output=text, error=f"not JSON: {exc.msg}")
    field = {
        "pointwise": "score",
        "listwise": "ranking",
        "checklist": "items",
        "checklist_items": "met",
    }.get(rubric.mode, "winner")
    value = data.get(field) if isinstance(data, dict) else None
    if rubric.mode == "listwise":
        return _ranked(rubric, text, value)
    if rubric.mode in CHECKLIST_MODES:
        return _checklist(rubric, text, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = f"{value:g}"
    if isinstance(value, str):
        value = value.strip()
    return _hard(rubric, text, value, f"JSON field '{field}'")


def from_pattern(rubric: Rubric, text: str) -> Verdict:
    matches = re.findall(rubric.pattern or "", text)
    found = matches[-1] if matches else None
    if isinstance(found, tuple):
        found = found[0]
    return _hard(rubric, text, found, f"pattern {rubric.pattern!r}")


def read_text(rubric: Rubric, text: str) -> Verdict:
    """A text answer under the rubric's ``json`` or ``parse`` reading."""
    return from_json(rubric, text) if rubric.read == "json" else from_pattern(rubric, text)


def _ranked(rubric: Rubric, text: str, ranking: object) -> Verdict:
    """A ranking (labels, best first) as points per position: the best of n labels gets n,
    the next n - 1; a label left out ranks below every one named."""
    labels = rubric.labels
    if not (
        isinstance(ranking, list)
        and ranking
        and all(isinstance(x, str) and x.strip() in labels for x in ranking)
        and len({x.strip() for x in ranking}) == len(ranking)
    ):
        return Verdict(
            status="invalid",
            raw_output=text,
            error=f"JSON field 'ranking' gave {ranking!r}, expected distinct labels of "
            f"{list(labels)}, best first",
        )
    rank = {x.strip(): n for n, x in enumerate(ranking)}
    points = [len(labels) - rank[lab] if lab in rank else 0 for lab in labels]
    order = ">".join(x.strip() for x in ranking)
    return Verdict(
        status="ok", raw_output=text, verdict=order, ranking=json.dumps({"points": points})
    )


def _checklist(rubric: Rubric, text: str, value: object) -> Verdict:
    """A written checklist, or the answers on its items (counted against the checklist where
    the answers are combined with it)."""
    try:
        if rubric.mode == "checklist":
            items = items_json(read_items(value))
        else:
            items = json.dumps(read_met(value, len(value) if isinstance(value, list) else -1))
    except ValueError as exc:
        return Verdict(status="invalid", raw_output=text, error=f"JSON field: {exc}")
    return Verdict(status="ok", raw_output=text, items=items)


def _hard(rubric: Rubric, text: str, label: str | None, where: str) -> Verdict:
    if label not in rubric.labels:
        return Verdict(
            status="invalid",
            raw_output=text,
            error=f"{where} gave {label!r}, expected one of {list(rubric.labels)}",
        )
    if rubric.mode == "pointwise":
        return Verdict(status="ok", raw_output=text, verdict=label, score=float(label))
    p_first = 1.0 if label == rubric.labels[0] else 0.0
    return Verdict(status="ok", raw_output=text, verdict=label, p_first=p_first)
