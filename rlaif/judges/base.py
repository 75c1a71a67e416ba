"""The protocol every judge backend implements, and the records it exchanges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rlaif.rubrics import Rubric

OnResult = Callable[[int, "Verdict"], None]


@dataclass(frozen=True)
class JudgeRequest:
    """One comparison in one order: is ``first`` better than ``second`` for ``prompt``?"""

    prompt: str
    first: str
    second: str
    reference: str | None = None
    """A reference answer, for rubrics that compare against one."""
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
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None


class Budget:
    """What lets the judges of one stage start another call: a spending cap, and no
    interrupt (Ctrl-C stops new calls while those in flight finish and are stored)."""

    def __init__(self, max_cost_usd: float | None = None):
        self.max_cost_usd = max_cost_usd
        self.spent = 0.0
        self.interrupted = False

    def allows(self) -> bool:
        if self.interrupted:
            return False
        return self.max_cost_usd is None or self.spent < self.max_cost_usd

    def exhausted(self) -> bool:
        """The cap (not an interrupt) is what stops new calls."""
        return self.max_cost_usd is not None and self.spent >= self.max_cost_usd

    def add(self, cost: float | None) -> None:
        self.spent += cost or 0.0


class JudgeBackend(Protocol):
    name: str

    def identity(self) -> dict[str, Any]:
        """What makes two answers interchangeable: backend kind, model, decoding, rubric."""
        ...

    def provenance(self) -> dict[str, str]:
        """``rubric_id`` and ``rubric_hash`` recorded with each judgment."""
        ...

    def render(self, request: JudgeRequest) -> Any:
        """The exact input sent for a request; hashed into the cache key."""
        ...

    def check(self) -> None:
        """Fail now, with a clear error, on what would make every judgment fail (a label the
        judge's tokenizer splits, a callable that returns nonsense); no paid call."""
        ...

    def run(self, requests: list[JudgeRequest], on_result: OnResult, budget: Budget) -> None:
        """Judge every request, calling ``on_result(index, verdict)`` as each finishes.

        A failing request yields an ``error`` verdict, not an exception; only a failure that
        would repeat for every request (a bad key, a bad request) raises ``FatalJudgeError``.
        Requests not started because the budget ran out get no call at all.
        """
        ...


class RubricJudge:
    """``render`` and ``provenance`` for backends that ask through a rubric template."""

    rubric: Rubric

    def check(self) -> None:
        """Nothing beyond the rubric's own checks by default (an API judge's tokenizer is not
        at hand); local backends check their labels against their tokenizer."""

    def provenance(self) -> dict[str, str]:
        return {"rubric_id": self.rubric.id, "rubric_hash": self.rubric.sha256}

    def render(self, request: JudgeRequest) -> list[dict[str, str]]:
        if request.rendered is not None:
            return request.rendered
        return self.rubric.messages(
            request.prompt, request.first, request.second, request.reference
        )


class BatchJudge:
    """``run`` for in-process backends that judge a batch at a time."""

    batch_size: int = 32

    def judge(self, requests: list[JudgeRequest]) -> list[Verdict]:
        raise NotImplementedError

    def order(self, requests: list[JudgeRequest]) -> list[int]:
        """The order to judge in (default: as given); a model batches similar lengths."""
        return list(range(len(requests)))

    def run(self, requests: list[JudgeRequest], on_result: OnResult, budget: Budget) -> None:
        order = self.order(requests)
        for start in range(0, len(order), self.batch_size):
            if not budget.allows():
                return
            batch = order[start : start + self.batch_size]
            for index, verdict in zip(batch, self.judge([requests[i] for i in batch]), strict=True):
                on_result(index, verdict)
