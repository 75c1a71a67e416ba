"""The columns the stages hand each other, in one place.

samples -> pairs -> judgments -> preferences: each stage reads the columns of the one
before it by these names; a judgment row is a pair row plus who judged it, in which order,
and the stored answer (:func:`judgment_record`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from rlaif.judges.records import Verdict

if TYPE_CHECKING:
    from rlaif.judges.base import Judge

PROMPT_COLUMNS = ("prompt_id", "prompt", "category")
"""Every prompt set, whatever its source; ``reference`` when ``prompts.reference_column``."""
SAMPLE_COLUMNS = (*PROMPT_COLUMNS, "responses", "n_tokens", "finished")
PAIR_COLUMNS = ("pair_id", "prompt_id", "prompt", "index_a", "index_b", "response_a", "response_b")
VERDICT_FIELDS = tuple(f.name for f in fields(Verdict))
RECORD_FIELDS = (*VERDICT_FIELDS, "key", "rubric_id", "rubric_hash", "prompt_hash", "failures")
"""What a judgment row takes from the store, beside the pair it judges."""
JUDGMENT_COLUMNS = (*PAIR_COLUMNS, "judge", "order", "p_a", "cached", *RECORD_FIELDS)
"""``order`` is ``ab`` or ``ba`` (``a``/``b`` for a pointwise score); ``p_a`` is P(response_a
wins) in the pair's own order."""
PROVENANCE = {"judges": "judge", "rubric_ids": "rubric_id", "rubric_hashes": "rubric_hash"}
"""Preference column -> the judgment column it lists, one entry per judgment behind it."""
PREFERENCE_COLUMNS = (
    "prompt", "chosen", "rejected", "p_chosen", "margin", "tie", "complete", "prompt_id",
    "pair_id", "n_judgments", *PROVENANCE, "judgment_keys",
)  # fmt: skip
"""``prompt``/``chosen``/``rejected`` are conversations, as TRL's trainers take them."""


def record_base(judge: Judge) -> dict[str, Any]:
    """What every stored judgment of ``judge`` shares."""
    identity = judge.identity()
    return {
        "judge": judge.name,
        "backend": identity["backend"],
        "model": judge.model or identity.get("callable"),
        **judge.provenance(),
    }


def judgment_record(
    base: dict[str, Any], key: str, prompt_hash: str | None, verdict: Verdict
) -> dict[str, Any]:
    """A verdict as a store row (``base`` from :func:`record_base`), the same whether it came
    online or from a provider batch."""
    return {
        **base,
        "key": key,
        "prompt_hash": prompt_hash,
        **{k: getattr(verdict, k) for k in VERDICT_FIELDS},
    }


def pair_columns(columns: list[str]) -> list[str]:
    """The pair columns a judge reads: the fixed ones, and ``reference`` when present."""
    return [*PAIR_COLUMNS, *(["reference"] if "reference" in columns else [])]
