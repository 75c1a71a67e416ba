"""Judging answers against per-prompt checklists (:mod:`rlaif.rubrics.checklists`).

A checklist judge (a ``checklist`` rubric, or a python judge with ``mode: checklist``) writes
each prompt's checklist once: one request per prompt, keyed, stored and budgeted like any
judgment, so a re-run reads it back instead of paying again. A person may replace a written
checklist (``rlaif checklists --set``); the store keeps the edit beside the judge's own,
and the edit is used from then on. Each answer is then scored against its prompt's
checklist: checked items (length, a required word, a format) here, for free; the others in
one request per answer to ``judge.checklists.items_judge`` (a ``checklist_items`` rubric),
itself stored and cached. The score is the weighted share of the items met, in [0, 1].

The rows are a pointwise judge's: one per pair and answer (orders ``a``/``b``), with the
answer's ``score`` and ``p_a`` = 0.5 + (score_a - score_b) / 2, so aggregation, the live
rewards and evaluation read them unchanged. An answer whose checklist could not be written
(or whose items could not be judged) gets the failed record's status and reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlaif.config import JudgeConfig
from rlaif.errors import ConfigError
from rlaif.hashing import stable_hash
from rlaif.judges import Judge, JudgeRequest, build_judge
from rlaif.judging.plan import Task, keyed
from rlaif.judging.schema import RECORD_FIELDS
from rlaif.judging.store import JudgmentStore
from rlaif.rubrics.checklists import Item, items_json, read_items, read_met, weighted_share

Answers = Callable[[Judge, list[Task]], list[tuple[Task, dict, bool]]]
"""The judging service's asker: each task's stored record (asked if due) and whether it was
already in the store."""


@dataclass
class Checklist:
    """One prompt's checklist as read from the store: its items, or why there are none."""

    key: str
    prompt: str
    record: dict
    text: str | None
    """The items as JSON: a person's edit, else what the judge wrote."""
    edited: bool
    items: list[Item] | None = None
    error: str | None = None


def writer_tasks(writer: Judge, records: list[dict]) -> list[Task]:
    """One request per prompt of ``records`` (its first row), to write its checklist."""
    identity = writer.identity()
    firsts: dict[str, int] = {}
    for row, rec in enumerate(records):
        firsts.setdefault(str(rec["prompt_id"]), row)
    return [
        keyed(
            writer,
            identity,
            row,
            "checklist",
            JudgeRequest(records[row]["prompt"], "", "", reference=records[row].get("reference")),
        )
        for row in firsts.values()
    ]


def read_checklists(
    tasks: list[Task], stored: list[dict], store: JudgmentStore, min_items: int
) -> list[Checklist]:
    """Each written checklist, a person's edit taking the judge's place."""
    edits = store.checklist_edits([t.key for t in tasks])
    out = []
    for task, rec in zip(tasks, stored, strict=True):
        edited = task.key in edits
        text = edits[task.key] if edited else rec.get("items")
        checklist = Checklist(task.key, task.request.prompt, rec, text, edited)
        if not edited and rec.get("status") != "ok":
            checklist.error = rec.get("error") or f"checklist {rec.get('status')}"
        else:
            try:
                checklist.items = read_items(json.loads(text or "null"), min_items=min_items)
            except ValueError as exc:
                checklist.error = f"checklist: {exc}"
        out.append(checklist)
    return out


def checklist_rows(
    writer: Judge,
    items_judge: Judge | None,
    records: list[dict],
    cfg: JudgeConfig,
    store: JudgmentStore,
    answers: Answers,
) -> list[dict]:
    """Every pair's two answers scored against their prompt's checklist, as pointwise rows
    (``judge`` is the checklist judge's name)."""
    tasks = writer_tasks(writer, records)
    written = answers(writer, tasks)
    checklists = read_checklists(tasks, [r for _, r, _ in written], store, cfg.checklists.min_items)
    by_prompt = {
        str(records[t.row]["prompt_id"]): c for t, c in zip(tasks, checklists, strict=True)
    }
    cached_writes = {t.key: hit for t, _, hit in written}

    # the items a judge must settle, one request per answer (the same answer in two pairs is
    # one key, asked once)
    item_tasks: list[Task] = []
    wanted: dict[tuple[int, str], Task] = {}
    identity = items_judge.identity() if items_judge is not None else None
    for row, rec in enumerate(records):
        checklist = by_prompt[str(rec["prompt_id"])]
        asked = [i.text for i in checklist.items or () if i.check is None]
        if not asked or items_judge is None:
            continue
        for side in ("a", "b"):
            request = JudgeRequest(
                rec["prompt"],
                rec[f"response_{side}"],
                "",
                reference=rec.get("reference"),
                items=tuple(asked),
            )
            task = keyed(items_judge, identity, row, side, request)
            item_tasks.append(task)
            wanted[row, side] = task
    # tasks exist only where there is an items judge to ask
    judged = (
        {t.key: (rec, hit) for t, rec, hit in answers(items_judge, item_tasks)}
        if item_tasks
        else {}
    )

    out = []
    for row, rec in enumerate(records):
        checklist = by_prompt[str(rec["prompt_id"])]
        scored = {}
        for side in ("a", "b"):
            task = wanted.get((row, side))
            answer = judged.get(task.key) if task is not None else None
            scored[side] = _score(checklist, rec[f"response_{side}"], answer, items_judge)
        a, b = scored["a"][0].get("score"), scored["b"][0].get("score")
        p_a = None if a is None or b is None else 0.5 + 0.5 * (a - b)
        for side in ("a", "b"):
            record, cached = scored[side]
            if cached is None or record.get("key") == checklist.key:
                cached = cached_writes.get(checklist.key, False)
            out.append(
                {
                    **rec,
                    "judge": writer.name,
                    "order": side,
                    "p_a": p_a,
                    "cached": cached,
                    **{k: record.get(k) for k in RECORD_FIELDS},
                }
            )
    return out


def _score(
    checklist: Checklist,
    answer: str,
    judged: tuple[dict, bool] | None,
    items_judge: Judge | None,
) -> tuple[dict, bool | None]:
    """The record of one answer's score against ``checklist``, and whether it was cached
    (None: settled here, as cached as its checklist)."""
    base = {
        "rubric_id": checklist.record.get("rubric_id"),
        "rubric_hash": checklist.record.get("rubric_hash"),
        "prompt_hash": checklist.record.get("prompt_hash"),
    }
    if checklist.items is None:
        status = checklist.record.get("status")
        return _failed(checklist.record, status if status != "ok" else None, checklist.error), False
    asked = [i for i in checklist.items if i.check is None]
    met_asked: list[bool] = []
    record: dict[str, Any] = {}
    cached: bool | None = False
    if asked:
        if items_judge is None:
            n = checklist.items.index(asked[0]) + 1
            reason = (
                f"checklist item {n} ({asked[0].text!r}) names no check and "
                "judge.checklists.items_judge is unset"
            )
            return _failed(checklist.record, "invalid", reason), False
        assert judged is not None
        record, cached = judged
        if record.get("status") != "ok":
            return {**record, "score": None}, cached
        try:
            met_asked = read_met(json.loads(record.get("items") or "null"), len(asked))
        except ValueError as exc:
            return _failed(record, "invalid", f"items: {exc}"), cached
    answers = iter(met_asked)
    met = [i.met_by(answer) if i.check is not None else next(answers) for i in checklist.items]
    score = weighted_share(checklist.items, met)
    if not record:  # every item checked here: no call, a key of its own, as new as the list
        cached = None
        record = {
            **base,
            "key": stable_hash({"checklist": checklist.key, "answer": answer}),
            "status": "ok",
            "cost_usd": 0.0,
        }
    return {
        **record,
        "score": score,
        "verdict": f"{sum(met)}/{len(met)}",
        "items": json.dumps(met),
        "error": None,
    }, cached


def _failed(record: dict, status: str | None, reason: str | None) -> dict:
    """``record`` (a stored one, its failure count kept) as the row of an answer it left
    without a score."""
    return {**record, "status": status or "invalid", "error": reason, "score": None}


def run_checklists(
    cfg: JudgeConfig, records: list[dict], store: JudgmentStore
) -> list[tuple[str, Checklist]]:
    """The checklists each checklist judge of ``cfg`` wrote (or would write) for the prompts
    of ``records``, as the store has them: (judge name, checklist), edits in place."""
    out = []
    for spec in cfg.judges:
        writer = build_judge(spec)
        if writer.mode != "checklist":
            continue
        tasks = writer_tasks(writer, records)
        stored = store.get_many(t.key for t in tasks)
        found = [stored.get(t.key) or {"status": "not written"} for t in tasks]
        read = read_checklists(tasks, found, store, cfg.checklists.min_items)
        out += [(spec.name, c) for c in read]
    return out


EDIT_FIELDS = ("key", "items", "judge", "prompt", "edited", "error")
"""What a line of ``rlaif checklists --set`` may hold: the listing's own fields."""


def edit_checklists(
    lines: list[str],
    source: str,
    known: set[str],
    store: JudgmentStore,
    *,
    reviewer: str,
    min_items: int,
    items_judge: bool,
) -> int:
    """Store people's checklists: JSON lines with the ``key`` of a checklist of the run and
    its ``items`` (``min_items`` to 8, each as :func:`read_items` reads a person's edit; an
    item without a check only where ``items_judge``, a judge to ask it, exists). Every line
    is checked first, so a bad one (its line number named) stores nothing. Returns how many
    distinct checklists were stored."""
    edits: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("expected an object with 'key' and 'items'")
            unknown = sorted(set(data) - set(EDIT_FIELDS))
            if unknown:
                raise ValueError(
                    f"unknown field(s) {', '.join(map(repr, unknown))} (a line holds: "
                    f"{', '.join(EDIT_FIELDS)})"
                )
            if data.get("key") not in known:
                raise ValueError(f"key {data.get('key')!r} is not one of this run's checklists")
            items = read_items(data.get("items"), min_items=min_items, strict=True)
            asked = [n for n, item in enumerate(items, 1) if item.check is None]
            if asked and not items_judge:
                raise ValueError(
                    f"item {asked[0]} names no check, and no judge could answer it "
                    "(judge.checklists.items_judge is unset): give it a check, or set one"
                )
            text = items_json(items)
            earlier = edits.get(data["key"])
            if earlier is not None and earlier[1] != text:
                raise ValueError(f"key {data['key']!r} was given other items on line {earlier[0]}")
            edits[data["key"]] = (number, text)
        except ValueError as exc:
            raise ConfigError(f"{source}:{number}: {exc}") from None
    for key, (_, items) in edits.items():
        store.put_checklist_edit(key, items, reviewer=reviewer)
    return len(edits)
