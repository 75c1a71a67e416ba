"""What a judge is asked and answers, and the budget that lets it ask: plain records, shared
by the judges, the store and the stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rlaif.chat import Prompt

OnResult = Callable[[int, "Verdict"], None]


@dataclass(frozen=True)
class JudgeRequest:
    """One comparison in one order: is ``first`` better than ``second`` for ``prompt``? Or,
    for a listwise rubric, how do ``responses`` rank?"""

    prompt: Prompt
    """The user's message, or a conversation ending with it (:mod:`rlaif.chat`)."""
    first: str
    second: str
    reference: str | None = None
    """A reference answer, for rubrics that compare against one."""
    responses: tuple[str, ...] = ()
    """Listwise: every answer shown, in the order shown (``first``/``second`` unused)."""
    items: tuple[str, ...] = ()
    """Checklist items: the requirements ``first`` is judged against."""
    rendered: Any = field(default=None, compare=False, repr=False)
    """What the judge's ``render`` made of it, kept so a request is rendered once (the judge
    stage renders every request up front to key it)."""


@dataclass(frozen=True)
class Verdict:
    status: Literal["ok", "invalid", "refused", "error"]
    """``invalid``: an answer that could not be read; ``error``: no answer (retried on re-run)."""
    raw_output: str
    verdict: str | None = None
    """The label the judge chose, as the rubric spells it."""
    p_first: float | None = None
    """P(first wins), normalised over the two labels."""
    label_mass: float | None = None
    """Probability the judge put on the labels at all; low means it was not answering."""
    score: float | None = None
    """Pointwise rubrics: the answer's score (the expected score under label probabilities)."""
    ranking: str | None = None
    """Listwise rubrics, as JSON: ``{"probs": [...]}``, each shown answer's probability of
    being the best (label probabilities), or ``{"points": [...]}``, a hard ranking where more
    points rank higher; one value per position shown (:mod:`rlaif.judging.listwise`)."""
    items: str | None = None
    """Checklist rubrics, as JSON: the checklist written (``checklist``), or each item met
    or not (``checklist_items``: ``[true, false, ...]``) (:mod:`rlaif.rubrics.checklists`)."""
    error: str | None = None
    input_tokens: int | None = None
    """Every input token, those read from or written to the provider's prompt cache included."""
    output_tokens: int | None = None
    cost_usd: float | None = None
    cached_input_tokens: int | None = None
    """Input tokens the provider read from its prompt cache."""
    cache_write_tokens: int | None = None
    """Input tokens the provider wrote to its prompt cache."""
    cache_saved_usd: float | None = None
    """What the prompt cache saved against the same call at the full input price (negative
    when a cache write cost more than it saved on this call)."""


class Budget:
    """What lets the judges of one stage start another call: a spending cap, no interrupt
    (Ctrl-C stops new calls while those in flight finish and are stored), and a store that
    still takes answers."""

    def __init__(self, max_cost_usd: float | None = None):
        self.max_cost_usd = max_cost_usd
        self.spent = 0.0
        self.interrupted = False
        self.halted: Exception | None = None
        """Why calls must stop for good in this run (the store refused a write): raised by
        the judging service once the calls in flight are in."""

    def allows(self) -> bool:
        if self.interrupted or self.halted is not None:
            return False
        return self.max_cost_usd is None or self.spent < self.max_cost_usd

    def exhausted(self) -> bool:
        """The cap (not an interrupt) is what stops new calls."""
        return self.max_cost_usd is not None and self.spent >= self.max_cost_usd

    def add(self, cost: float | None) -> None:
        self.spent += cost or 0.0
