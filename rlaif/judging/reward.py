"""The judges as a live reward, asked through the judge stage's own function: the judgment
store answers what was judged before (a resumed run pays nothing for it), claims keep two
processes from paying for one key, and one budget across the whole training run stops new
calls once it is spent. The judges are built once and kept open for every call (a local judge
loads its weights once, an API judge keeps its client and connections).

``JudgeReward`` scores a completion against reference answers (GRPO, ``serve-reward``); a
listwise judge ranks a prompt's completions and its reference answers in one call per order
shown, instead of one call per completion, reference and order;
``PointwiseReward`` scores a rollout on its own with a pointwise rubric (d-RLAIF's PPO).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any, NamedTuple

from rlaif.chat import Prompt
from rlaif.config import JudgeConfig
from rlaif.errors import ConfigError
from rlaif.hashing import stable_hash
from rlaif.judges import Budget, build_judge
from rlaif.judging.service import judge_records
from rlaif.judging.store import JudgmentStore
from rlaif.rubrics import load_rubric
from rlaif.rubrics.rubric import LISTWISE_LABELS

log = logging.getLogger(__name__)
NEUTRAL = 0.5
"""The reward of a completion no judge could answer for (budget reached, judge failed), where
a trainer takes a number whatever happened (rlaif's own GRPO): no push either way."""


class Scored(NamedTuple):
    """One answer's reward, or None with why no judge answered for it."""

    value: float | None
    status: str = "ok"
    """``ok``; else the status of the judgments that failed (``error``, ``invalid``,
    ``skipped`` for the budget, ``pending``)."""
    reason: str | None = None


def _failure(rows: list[dict]) -> Scored:
    """What an answer whose judgments ``rows`` all failed gets: the first one's reason."""
    if not rows:
        return Scored(None, "error", "no judgment was made")
    first = rows[0]
    reason = f"judge '{first['judge']}': {first['status']}"
    if first.get("error"):
        reason += f": {first['error']}"
    return Scored(None, str(first["status"]), reason)


class _JudgedReward:
    """What both rewards share: the judges built once, the store, the budget, and one account
    per call (``steps``: judgments, calls made, cache hits, cost, unanswered)."""

    def __init__(self, judges: JudgeConfig, store: JudgmentStore, budget: Budget) -> None:
        self.judges, self.store, self.budget = judges, store, budget
        self.backends = {spec.name: build_judge(spec) for spec in judges.judges}
        for backend in self.backends.values():
            backend.keep_open()
        self.steps: list[dict[str, Any]] = []
        self.trainer: Any = None
        """The trainer whose step each account names (set once the trainer exists)."""
        self.step: int | None = None
        """The trainer step (policy version) being judged, where no trainer is set: an
        adapter sets it from what its trainer passes."""

    @property
    def policy_step(self) -> int | None:
        return self.trainer.state.global_step if self.trainer is not None else self.step

    def _judge(
        self, answers: list[tuple[str, str, str]], calls: list[int] | None = None
    ) -> tuple[list[str], list[dict]]:
        """Judge (prompt, response_a, response_b) items; return each item's pair id and the
        judgment rows. Items of one prompt and one ``calls`` number (default: one for all)
        share a prompt id, so a listwise judge ranks their answers together."""
        ids = [stable_hash(list(item))[:16] for item in answers]
        unique = dict(zip(ids, zip(answers, calls or [0] * len(answers), strict=True), strict=True))
        records: list[dict] = []
        indices: dict[str, dict[str, int]] = defaultdict(dict)
        for pair_id, ((prompt, a, b), call) in unique.items():
            prompt_id = stable_hash([prompt, call])[:12]
            index = indices[prompt_id]
            records.append(
                {
                    "pair_id": pair_id,
                    "prompt_id": prompt_id,
                    "prompt": prompt,
                    "index_a": index.setdefault(a, len(index)),
                    "index_b": index.setdefault(b, len(index)),
                    "response_a": a,
                    "response_b": b,
                }
            )
        self.store.policy_step = self.policy_step
        rows = judge_records(
            records, self.judges, store=self.store, budget=self.budget, backends=self.backends
        )
        return ids, rows

    def _p_a(self, rows: list[dict]) -> tuple[dict[str, list[float]], dict[str, list[dict]]]:
        """Each pair's P(a wins) from the rows that decide it (``judge.cascade``: see
        ``decides``; all rows otherwise), and its failed rows."""
        deciding = [r for r in rows if r.get("decides", True)]
        p_a: dict[str, list[float]] = defaultdict(list)
        for r in deciding:
            if r["p_a"] is not None:
                p_a[r["pair_id"]].append(r["p_a"])
        return p_a, self._failed_rows(deciding)

    def _staleness(self, rows: list[dict], step: int | None) -> dict[str, Any]:
        """How old the judgments reused from the store are: the steps between the policy
        that wrote each answer (when it was judged) and this one."""
        if step is None or not rows:
            return {}
        hits = {r["key"] for r in rows if r["cached"]}
        written = [r["policy_step"] for r in self.store.get_many(hits).values()]
        ages = [step - w for w in written if w is not None and w < step]
        if not ages:
            return {"stale_judgments": 0}
        return {
            "stale_judgments": len(ages),
            "staleness_mean": round(sum(ages) / len(ages), 3),
            "staleness_max": max(ages),
        }

    @staticmethod
    def _failed_rows(rows: list[dict]) -> dict[str, list[dict]]:
        """The rows that gave no answer, by pair id."""
        failed: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            if r["status"] != "ok":
                failed[r["pair_id"]].append(
                    {"judge": r["judge"], "status": r["status"], "error": r["error"]}
                )
        return failed

    def _account(self, rows: list[dict], unanswered: int, neutral: float) -> None:
        cached = sum(bool(r["cached"]) for r in rows)
        # a key shown twice (a pointwise answer in both places) was paid once
        paid = {r["key"]: r["cost_usd"] or 0 for r in rows if not r["cached"]}
        step = self.policy_step
        entry = {
            "step": step,
            "judgments": len(rows),
            "calls": len(paid),
            "cache_hit_rate": round(cached / len(rows), 4) if len(rows) else 0.0,
            "cost_usd": round(sum(paid.values()), 6),
            "unanswered": unanswered,
            **self._staleness(rows, step),
        }
        self.steps.append(entry)
        log.info("judge reward %s", json.dumps(entry))
        if unanswered:
            log.warning(
                "judge reward: %d answer(s) got no judgment (budget or judge failures); a "
                "trainer that takes a number counts them as %.2f",
                unanswered,
                neutral,
            )


class JudgeReward(_JudgedReward):
    """A ``trl`` reward function: P(completion beats each reference answer), averaged over the
    references, orders and judges (a pointwise rubric's score gap on the same 0-1 scale)."""

    __name__ = "judge"  # trl logs this reward as rewards/judge/...

    def __call__(
        self,
        prompts: list,
        completions: list,
        prompt_text: list[Prompt],
        baselines: list[list[str]],
        **_: Any,
    ) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        scored = self.scored(prompt_text, texts, baselines)
        return [NEUTRAL if s.value is None else s.value for s in scored]

    def scored(
        self, prompt_text: list[Prompt], texts: list[str], baselines: list[list[str]]
    ) -> list[Scored]:
        """Each completion's reward, or why it has none."""
        items = [
            [(prompt, text, answer) for answer in answers]
            for prompt, text, answers in zip(prompt_text, texts, baselines, strict=True)
        ]
        calls = self._calls(prompt_text, texts, baselines)
        ids, rows = self._judge(
            [item for group in items for item in group],
            [call for call, group in zip(calls, items, strict=True) for _ in group],
        )
        p_a, failed = self._p_a(rows)
        out, start = [], 0
        for group in items:
            group_ids = ids[start : start + len(group)]
            start += len(group)
            got = [p for i in group_ids for p in p_a[i]]
            if got:
                out.append(Scored(sum(got) / len(got)))
            else:
                out.append(_failure([r for i in group_ids for r in failed[i]]))
        self._account(rows, sum(s.value is None for s in out), NEUTRAL)
        return out

    def _calls(self, prompts: list, texts: list[str], baselines: list[list[str]]) -> list[int]:
        """Which listwise call ranks each completion: a prompt's distinct completions in
        turn, as many to a call as fit beside its reference answers in the fewest labels a
        listwise judge here has."""
        labels = [
            len(b.rubric.labels if b.rubric is not None else LISTWISE_LABELS)
            for b in self.backends.values()
            if b.mode == "listwise"
        ]
        if not labels:
            return [0] * len(texts)
        seen: dict[str, dict[str, int]] = defaultdict(dict)
        calls = []
        for prompt, text, answers in zip(prompts, texts, baselines, strict=True):
            room = max(1, min(labels) - len(set(answers)))
            distinct = seen[stable_hash(prompt)]
            calls.append(distinct.setdefault(text, len(distinct)) // room)
        return calls


class PointwiseReward(_JudgedReward):
    """d-RLAIF: the first judge scores each rollout on its own with its pointwise rubric, or
    against the prompt's checklist (a checklist judge, with its items judge); a rollout it
    could not score (budget, failure) gets the scale's middle: no push either way."""

    def __init__(self, judges: JudgeConfig, store: JudgmentStore, budget: Budget) -> None:
        if not judges.judges:
            raise ConfigError("train: method 'd_rlaif' needs a judge")
        kept = [
            judges.judges[0],
            *(j for j in judges.judges if j.name == judges.checklists.items_judge),
        ]
        super().__init__(judges.model_copy(update={"judges": kept}), store, budget)
        backend = self.backends[kept[0].name]
        if backend.mode == "checklist":
            self.middle = 0.5
            return
        if backend.rubric is None or backend.mode != "pointwise":
            raise ConfigError(
                f"train: method 'd_rlaif' scores rollouts with judge '{backend.name}', whose "
                "rubric must be pointwise (e.g. ultrafeedback_helpfulness) or a checklist"
            )
        scores = backend.rubric.scores
        self.middle = (min(scores) + max(scores)) / 2

    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        scored = self.scored(prompts, responses)
        return [self.middle if s.value is None else s.value for s in scored]

    def scored(self, prompts: list[Prompt], responses: list[str]) -> list[Scored]:
        """Each rollout's score, or why it has none."""
        # the rollout on both sides: a pointwise judge asks each answer once
        ids, rows = self._judge([(p, r, r) for p, r in zip(prompts, responses, strict=True)])
        score = {
            r["pair_id"]: r["score"] for r in rows if r["status"] == "ok" and r["score"] is not None
        }
        failed = self._failed_rows(rows)
        out = [Scored(score[i]) if i in score else _failure(failed[i]) for i in ids]
        self._account(rows, sum(s.value is None for s in out), self.middle)
        return out


class GroupReward(_JudgedReward):
    """No reference answer: each prompt's completions compared with one another. A listwise
    judge ranks a group's distinct completions in one call per order shown (as many to a call
    as its labels allow); a python pairwise judge compares every pair of them. A completion's
    reward is the mean P(it beats another completion of its group); alone in its group, 0.5.
    A judge with a pairwise rubric is built with the shipped listwise rubric read the same way
    (``listwise_helpful``, or ``listwise_helpful_json`` for a rubric read as JSON or parsed;
    same backend and model), so a group costs calls per order, not per pair."""

    def __init__(self, judges: JudgeConfig, store: JudgmentStore, budget: Budget) -> None:
        specs = []
        for spec in judges.judges:
            rubric = load_rubric(spec.rubric) if getattr(spec, "rubric", None) else None
            if rubric is not None and rubric.mode == "pairwise":
                listwise = (
                    "listwise_helpful"
                    if rubric.read == "label_probs"
                    else ("listwise_helpful_json")
                )
                spec = spec.model_copy(update={"rubric": listwise})
            specs.append(spec)
        super().__init__(judges.model_copy(update={"judges": specs}), store, budget)
        labels = [
            len(b.rubric.labels if b.rubric is not None else LISTWISE_LABELS)
            for b in self.backends.values()
            if b.mode == "listwise"
        ]
        self.room = min(labels) if labels else None
        """Completions one listwise call ranks; None: pairs, each asked alone."""

    def scored(self, prompts: list[Prompt], texts: list[str]) -> list[Scored]:
        """Each completion's reward within the completions of its prompt."""
        groups: dict[str, list[str]] = defaultdict(list)
        keys = [stable_hash(p) for p in prompts]
        for key, text in zip(keys, texts, strict=True):
            if text not in groups[key]:
                groups[key].append(text)
        items: list[tuple[Prompt, str, str]] = []
        calls: list[int] = []
        prompt_of = dict(zip(keys, prompts, strict=True))
        for key, distinct in groups.items():
            size = self.room or len(distinct)
            for call, start in enumerate(range(0, len(distinct), size)):
                chunk = distinct[start : start + size]
                for i, a in enumerate(chunk):
                    for b in chunk[i + 1 :]:
                        items.append((prompt_of[key], a, b))
                        calls.append(call)
        wins: dict[tuple[str, str], list[float]] = defaultdict(list)
        failed_of: dict[tuple[str, str], list[dict]] = defaultdict(list)
        if items:
            ids, rows = self._judge(items, calls)
            p_a, failed = self._p_a(rows)
            for pair_id, (prompt, a, b) in zip(ids, items, strict=True):
                key = stable_hash(prompt)
                got = p_a.get(pair_id)
                if got:
                    mean = sum(got) / len(got)
                    wins[key, a].append(mean)
                    wins[key, b].append(1 - mean)
                else:
                    failed_of[key, a] += failed[pair_id]
                    failed_of[key, b] += failed[pair_id]
        out = []
        for key, text in zip(keys, texts, strict=True):
            if len(groups[key]) == 1:
                out.append(Scored(NEUTRAL))
            elif wins[key, text]:
                out.append(Scored(sum(wins[key, text]) / len(wins[key, text])))
            else:
                out.append(_failure(failed_of[key, text]))
        if items:
            self._account(rows, sum(s.value is None for s in out), NEUTRAL)
        return out
