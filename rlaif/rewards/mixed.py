"""A reward made of weighted components (``reward:``): judges' scores and verifiable checks,
each normalised within its group or left raw, all through one judgment store and budget.

Every call scores a batch of (prompt, completion, reference) items, the completions of one
prompt forming a group (GRPO's), and returns the total and each component's values, with why
a value is missing where one is. Each call's account (per component: mean, spread, failures;
per judge: judgments, calls, cache hits, cost, unanswered, staleness) is kept in ``steps`` and,
with a ``log_path``, appended there as a JSON line: what the trackers, the monitor and
``rlaif report`` show per step.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlaif.chat import Prompt
from rlaif.config import JudgeConfig
from rlaif.config.reward import (
    ExactAnswerComponent,
    JsonSchemaComponent,
    JudgeComponent,
    PythonComponent,
    RegexComponent,
    RewardConfig,
)
from rlaif.errors import ConfigError, RlaifError
from rlaif.hashing import stable_hash
from rlaif.judges import Budget
from rlaif.judging.reward import GroupReward, JudgeReward, PointwiseReward, Scored
from rlaif.judging.store import JudgmentStore
from rlaif.rewards import checks
from rlaif.rubrics import load_rubric

log = logging.getLogger(__name__)
_LOG_LOCK = threading.Lock()
"""Rewards scoring side by side (a service's lanes) append whole lines to one log."""


@dataclass(frozen=True)
class Item:
    """One completion to reward: its prompt (text or conversation), and the prompt's reference
    answer where there is one."""

    prompt: Prompt
    completion: str
    reference: str | None = None


@dataclass
class Scores:
    """One call's rewards: the weighted total per item, each component's own value, and why a
    component has no value (or its failure value) where it has none."""

    total: list[float | None]
    components: dict[str, list[float | None]]
    reasons: dict[str, list[str | None]]
    account: dict[str, Any] = field(default_factory=dict)
    failed: list[str | None] = field(default_factory=list)
    """Per item, the status of the judgment that left a judge component without a value
    (``error``, ``invalid``, ``skipped`` for the budget, ``pending``); None when none did."""


@dataclass(frozen=True)
class ItemReward:
    """One completion's reward: the total, each component's value, and why a component has
    none (or its failure value) where that is so."""

    total: float | None
    components: dict[str, float | None]
    reasons: dict[str, str | None] = field(default_factory=dict)
    failed: str | None = None
    """The status of the judgment that left a judge component without a value, if any."""


class JudgeScorer:
    """A judge component: the judge's score for each completion, on 0-1 unless asked for the
    rubric's own scale."""

    def __init__(
        self,
        component: JudgeComponent,
        judges: JudgeConfig,
        store: JudgmentStore,
        budget: Budget,
    ):
        names = {spec.name: spec for spec in judges.judges}
        if component.judge not in names:
            raise ConfigError(
                f"reward.components: no judge named '{component.judge}' in judge.judges "
                f"(judges: {', '.join(names) or 'none'})"
            )
        spec = names[component.judge]
        rubric = load_rubric(spec.rubric) if getattr(spec, "rubric", None) else None
        self.mode = rubric.mode if rubric is not None else spec.mode  # type: ignore[union-attr]
        self.span: tuple[float, float] = (0.0, 1.0)
        """The scale mapped onto 0-1 (a pointwise rubric's, with ``scale: unit``)."""
        self.middle = 0.5
        """The value of no push either way, on the scale the component gives."""
        self._one = judges.model_copy(update={"judges": [spec]})
        self._store, self._budget = store, budget
        self.pointwise: PointwiseReward | None = None
        self._against: JudgeReward | None = None
        self._group: GroupReward | None = None
        if self.mode in ("pointwise", "checklist"):
            items = judges.checklists.items_judge
            kept = [spec, *(s for s in judges.judges if s.name == items)]
            self.pointwise = PointwiseReward(
                judges.model_copy(update={"judges": kept}), store, budget
            )
            if self.mode == "pointwise" and rubric is not None:
                low, high = min(rubric.scores), max(rubric.scores)
                if component.scale == "unit":
                    self.span = (low, high)
                else:
                    self.middle = (low + high) / 2
        elif self.mode not in ("pairwise", "listwise"):
            raise ConfigError(
                f"reward.components: judge '{spec.name}' has a {self.mode} rubric, which scores "
                "no answer (a checklist's items judge is named by its checklist judge)"
            )
        self.last_accounts: list[dict[str, Any]] = []
        self.step: int | None = None

    @property
    def parts(self) -> list[Any]:
        """The rewards built so far (a comparison's are built when first needed: a dataset
        with reference answers never loads the group ranker's judge)."""
        return [p for p in (self.pointwise, self._against, self._group) if p is not None]

    @property
    def against(self) -> JudgeReward:
        if self._against is None:
            self._against = JudgeReward(self._one, self._store, self._budget)
        return self._against

    @property
    def group(self) -> GroupReward:
        if self._group is None:
            self._group = GroupReward(self._one, self._store, self._budget)
        return self._group

    def score(self, items: list[Item], step: int | None) -> list[Scored]:
        self.step = step
        before = {id(part): len(part.steps) for part in self.parts}
        try:
            return self._score(items)
        finally:
            self.last_accounts = [
                entry for part in self.parts for entry in part.steps[before.get(id(part), 0) :]
            ]

    def _score(self, items: list[Item]) -> list[Scored]:
        if self.pointwise is not None:
            self.pointwise.step = self.step
            got = self.pointwise.scored([i.prompt for i in items], [i.completion for i in items])
            low, high = self.span
            return [s if s.value is None else Scored((s.value - low) / (high - low)) for s in got]
        out: list[Scored | None] = [None] * len(items)
        with_ref = [n for n, i in enumerate(items) if i.reference]
        without = [n for n, i in enumerate(items) if not i.reference]
        if with_ref:
            self.against.step = self.step
            got = self.against.scored(
                [items[n].prompt for n in with_ref],
                [items[n].completion for n in with_ref],
                [[str(items[n].reference)] for n in with_ref],
            )
            for n, s in zip(with_ref, got, strict=True):
                out[n] = s
        if without:
            self.group.step = self.step
            got = self.group.scored(
                [items[n].prompt for n in without], [items[n].completion for n in without]
            )
            for n, s in zip(without, got, strict=True):
                out[n] = s
        return [s for s in out if s is not None]

    def neutral(self) -> float:
        return self.middle


class _CheckScorer:
    """A verifiable component: a value per completion; a check that could not give one (no
    reference to compare with, a python check that hung or crashed) its failure value."""

    def __init__(self, component: Any):
        self.component = component
        self.python: checks.PythonCheck | None = None
        if isinstance(component, PythonComponent):
            self.python = checks.PythonCheck(
                component.callable,
                timeout_s=component.timeout_s,
                memory_mb=component.memory_mb,
                workers=component.workers,
            )
        self.failure_value = getattr(component, "on_failure", 0.0)

    def values(self, items: list[Item]) -> list[float | checks.CheckFailed]:
        c = self.component
        if self.python is not None:
            return self.python.many([(i.prompt, i.completion, i.reference) for i in items])
        out: list[float | checks.CheckFailed] = []
        for item in items:
            try:
                if isinstance(c, ExactAnswerComponent):
                    out.append(checks.exact_answer(item.completion, item.reference, c.tolerance))
                elif isinstance(c, RegexComponent):
                    out.append(checks.regex(item.completion, c.pattern))
                elif isinstance(c, JsonSchemaComponent):
                    out.append(checks.json_schema(item.completion, c.json_schema))
                else:
                    raise TypeError(f"no check for {type(c).__name__}")
            except checks.CheckFailed as exc:
                out.append(exc)
        return out

    def close(self) -> None:
        if self.python is not None:
            self.python.close()


class MixedReward:
    """The reward ``reward`` describes (without components: the first judge's score), over
    ``judges`` and one ``store`` and ``budget`` for every judge component."""

    def __init__(
        self,
        judges: JudgeConfig,
        reward: RewardConfig,
        store: JudgmentStore,
        budget: Budget,
        *,
        log_path: Path | None = None,
        steps: list[dict[str, Any]] | None = None,
    ):
        components = list(reward.components)
        if not components:
            if not judges.judges:
                raise ConfigError("reward: no components, and the pipeline names no judge")
            components = [JudgeComponent(judge=judges.judges[0].name)]
        self.cfg = reward
        self.components = components
        self.store, self.budget = store, budget
        self.scorers: dict[str, JudgeScorer | _CheckScorer] = {}
        for c in components:
            if isinstance(c, JudgeComponent):
                self.scorers[c.label()] = JudgeScorer(c, judges, store, budget)
            else:
                self.scorers[c.label()] = _CheckScorer(c)
        self.log_path = log_path
        self.steps: list[dict[str, Any]] = steps if steps is not None else []
        """Each call's account (a list several rewards may share)."""

    @property
    def names(self) -> list[str]:
        return [c.label() for c in self.components]

    def score(self, items: list[Item], step: int | None = None) -> Scores:
        """Every component's value for each item, normalised and weighted into a total."""
        groups = [stable_hash(i.prompt) for i in items]
        values: dict[str, list[float | None]] = {}
        reasons: dict[str, list[str | None]] = {}
        failed: list[str | None] = [None] * len(items)
        judged: list[dict[str, Any]] = []
        for c in self.components:
            name = c.label()
            scorer = self.scorers[name]
            if isinstance(scorer, JudgeScorer):
                got = scorer.score(items, step)
                values[name], reasons[name] = self._judged(name, scorer, got)
                for n, s in enumerate(got):
                    if s.value is None and failed[n] is None:
                        failed[n] = s.status
                judged += [{"component": name, **a} for a in scorer.last_accounts]
            else:
                checked = scorer.values(items)
                values[name] = [
                    scorer.failure_value if isinstance(v, checks.CheckFailed) else v
                    for v in checked
                ]
                reasons[name] = [
                    str(v) if isinstance(v, checks.CheckFailed) else None for v in checked
                ]
        total: list[float | None] = [0.0] * len(items)
        for c in self.components:
            shaped = (
                _normalised(values[c.label()], groups)
                if c.normalize == "group"
                else values[c.label()]
            )
            for n, v in enumerate(shaped):
                cur = total[n]
                total[n] = None if v is None or cur is None else cur + c.weight * v
        account = self._account(step, items, values, reasons, total, judged)
        return Scores(total, values, reasons, account, failed)

    def rewards(self, items: list[Item], step: int | None = None) -> list[ItemReward]:
        """:meth:`score`, one :class:`ItemReward` per item."""
        scores = self.score(items, step)
        return [
            ItemReward(
                total,
                {name: values[n] for name, values in scores.components.items()},
                {name: reasons[n] for name, reasons in scores.reasons.items()},
                scores.failed[n],
            )
            for n, total in enumerate(scores.total)
        ]

    def _judged(
        self, name: str, scorer: JudgeScorer, got: list[Scored]
    ) -> tuple[list[float | None], list[str | None]]:
        """A judge component's values under ``reward.on_failure``."""
        failed = [s for s in got if s.value is None]
        if failed and self.cfg.on_failure == "error":
            raise RlaifError(
                f"reward: component '{name}': {len(failed)} of {len(got)} answer(s) got no "
                f"judgment ({failed[0].reason})"
            )
        fill = scorer.neutral() if self.cfg.on_failure == "neutral" else None
        return [fill if s.value is None else s.value for s in got], [s.reason for s in got]

    def _account(
        self,
        step: int | None,
        items: list[Item],
        values: dict[str, list[float | None]],
        reasons: dict[str, list[str | None]],
        total: list[float | None],
        judged: list[dict[str, Any]],
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"step": step, "completions": len(items), "components": {}}
        for name, vals in values.items():
            known = [v for v in vals if v is not None]
            failed = [r for r in reasons[name] if r]
            entry["components"][name] = {
                **_spread(known),
                "failed": len(failed),
                **({"failure": failed[0]} if failed else {}),
            }
        entry["total"] = _spread([t for t in total if t is not None])
        if judged:
            entry["judges"] = judged
        self.steps.append(entry)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with _LOG_LOCK, self.log_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        for name, c in entry["components"].items():
            if c["failed"]:
                log.warning(
                    "reward: component '%s' has no value for %d of %d completion(s): %s",
                    name,
                    c["failed"],
                    len(items),
                    c.get("failure"),
                )
        return entry

    def close(self) -> None:
        for scorer in self.scorers.values():
            if isinstance(scorer, _CheckScorer):
                scorer.close()


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": math.nan, "std": math.nan}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"mean": round(mean, 6), "std": round(std, 6)}


def _normalised(values: list[float | None], groups: list[str]) -> list[float | None]:
    """Each value minus its group's mean over the group's standard deviation (0 where the
    group's values are all alike)."""
    members: dict[str, list[float]] = defaultdict(list)
    for v, g in zip(values, groups, strict=True):
        if v is not None:
            members[g].append(v)
    stats = {g: _spread(vs) for g, vs in members.items()}
    out: list[float | None] = []
    for v, g in zip(values, groups, strict=True):
        if v is None:
            out.append(None)
            continue
        s = stats[g]
        out.append(0.0 if s["std"] < 1e-8 else (v - s["mean"]) / s["std"])
    return out


def flat_account(entry: dict[str, Any]) -> dict[str, float]:
    """A call's account as flat numbers (what a trainer logs, e.g. OpenRLHF's
    ``extra_logs``): the judges' judgments, calls, cache-hit rate, cost and unanswered answers
    summed over components, and each component's mean."""
    judges = entry.get("judges", [])
    judgments = sum(j["judgments"] for j in judges)
    hits = sum(j["cache_hit_rate"] * j["judgments"] for j in judges)
    out: dict[str, float] = {
        "judgments": judgments,
        "calls": sum(j["calls"] for j in judges),
        "cache_hit_rate": round(hits / judgments, 4) if judgments else 0.0,
        "cost_usd": round(sum(j["cost_usd"] for j in judges), 6),
        "unanswered": sum(j["unanswered"] for j in judges),
    }
    for name, stats in entry.get("components", {}).items():
        if not math.isnan(stats["mean"]):
            out[f"reward/{name}"] = stats["mean"]
    return out
