"""What every judge backend is and can do (:class:`Judge`), and the two ways a backend runs
requests: through a rubric (:class:`RubricJudge`), a batch at a time (:class:`BatchJudge`)."""

from __future__ import annotations

from typing import Any

from rlaif.judges.records import Budget, JudgeRequest, OnResult, Verdict
from rlaif.rubrics import Rubric


class Judge:
    """What every judge backend is and can do, with the defaults most backends want; a
    backend overrides what differs (the rubric judges, the API judges' cost and batches)."""

    name: str
    model: str | None = None
    """The model it runs or calls (None: a python callable)."""
    rubric: Rubric | None = None
    """The rubric it asks through (None: a python callable, always pairwise)."""
    in_flight: int = 0
    """Requests being answered right now (API judges), for the progress bar."""

    @property
    def mode(self) -> str:
        """The rubric's mode: ``pairwise``, ``pointwise``, ``listwise``, ``checklist`` (writes
        a prompt's checklist) or ``checklist_items`` (which of its items an answer meets)."""
        return self.rubric.mode if self.rubric is not None else "pairwise"

    def identity(self) -> dict[str, Any]:
        """What makes two answers interchangeable: backend kind, model, decoding, rubric."""
        raise NotImplementedError

    def provenance(self) -> dict[str, str]:
        """``rubric_id`` and ``rubric_hash`` recorded with each judgment."""
        raise NotImplementedError

    def render(self, request: JudgeRequest) -> Any:
        """The exact input sent for a request; hashed into the cache key."""
        raise NotImplementedError

    def check(self) -> None:
        """Fail now, with a clear error, on what would make every judgment fail (a label the
        judge's tokenizer splits, a callable that returns nonsense); no paid call."""

    def reach(self) -> None:
        """Fail now, with a clear error naming the judge, when its server cannot be reached,
        refuses its key or does not serve its model; a call that costs nothing. Nothing to
        reach by default (local judges)."""

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """USD for a call of this size; None when the judge has no price (local ones)."""
        return None

    def estimated_tokens(self, rendered: Any) -> tuple[int, int]:
        """Input tokens (characters / 4) and the most output a request may use."""
        texts = [m["content"] if isinstance(m, dict) else str(m) for m in rendered]
        return sum(map(len, texts)) // 4, 1

    @property
    def provider_batches(self) -> bool:
        """Whether the judge asks through its provider's batch API (an API judge with
        ``batch.enabled``); the judging service then submits and collects batches."""
        return False

    @property
    def batch_discount(self) -> float:
        """The share of the online price its judge stage pays (provider batches: about half)."""
        return 1.0

    def run(self, requests: list[JudgeRequest], on_result: OnResult, budget: Budget) -> None:
        """Judge every request, calling ``on_result(index, verdict)`` as each finishes.

        A failing request yields an ``error`` verdict, not an exception; only a failure that
        would repeat for every request (a bad key, a bad request) raises ``FatalJudgeError``.
        Requests not started because the budget ran out (or after Ctrl-C) get no call at all.
        """
        raise NotImplementedError

    def keep_open(self) -> None:
        """Keep what ``run`` sets up (an API judge's event loop, client and connections)
        across calls, for callers that call ``run`` once per batch for a process's life: a
        Ray actor, a live reward. Nothing to keep by default."""


class RubricJudge(Judge):
    """``render``, ``provenance`` and the mode of backends that ask through a rubric."""

    rubric: Rubric

    def provenance(self) -> dict[str, str]:
        return {"rubric_id": self.rubric.id, "rubric_hash": self.rubric.sha256}

    def render(self, request: JudgeRequest) -> list[dict[str, str]]:
        if request.rendered is not None:
            return request.rendered
        return self.rubric.messages(
            request.prompt,
            request.first,
            request.second,
            request.reference,
            request.responses,
            request.items,
        )


class BatchJudge(Judge):
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
