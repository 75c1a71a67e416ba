"""Stage 3: every pair judged (in both orders by default) by every configured judge.

Each request is keyed by a hash of the judge's identity and the exact rendered input.
Answers already in the store are reused, new ones are written every ``flush_every``
judgments, so a re-run pays for nothing twice and a crash loses one batch at most.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from datasets import Dataset
from tqdm.auto import tqdm

from rlaif.config import JudgeConfig
from rlaif.hashing import stable_hash
from rlaif.judges import JudgeBackend, JudgeRequest, build_judge
from rlaif.stages.pair import PAIR_COLUMNS
from rlaif.store import JudgmentStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Task:
    row: int
    order: str
    request: JudgeRequest
    key: str
    prompt_hash: str


def judge(pairs: Dataset, cfg: JudgeConfig, *, store: JudgmentStore) -> Dataset:
    """One row per (pair, judge, order), with ``p_a`` = P(response_a wins) in the pair's order."""
    backends = [build_judge(spec) for spec in cfg.judges]
    records = pairs.select_columns(list(PAIR_COLUMNS)).to_list()
    out: list[dict] = []
    for backend in backends:
        tasks = _tasks(backend, records, cfg.orders)
        known = store.get_many(t.key for t in tasks)
        todo = list(
            {
                t.key: t for t in tasks if known.get(t.key, {}).get("status") in (None, "error")
            }.values()
        )
        log.info(
            "judge %s: %d requests, %d cached, %d to judge",
            backend.name,
            len(tasks),
            len(tasks) - len(todo),
            len(todo),
        )
        _run(backend, todo, cfg.flush_every, store)
        stored = store.get_many(t.key for t in tasks)
        for t in tasks:
            rec = stored[t.key]
            p_first = rec["p_first"]
            p_a = None if p_first is None else (p_first if t.order == "ab" else 1.0 - p_first)
            out.append(
                {
                    **records[t.row],
                    "judge": backend.name,
                    "order": t.order,
                    "p_a": p_a,
                    "cached": t.key in known and known[t.key]["status"] != "error",
                    **{
                        k: rec[k]
                        for k in (
                            "key",
                            "status",
                            "verdict",
                            "p_first",
                            "label_mass",
                            "raw_output",
                            "error",
                            "rubric_id",
                            "rubric_hash",
                            "prompt_hash",
                        )
                    },
                }
            )
    return Dataset.from_list(out)


def _tasks(backend: JudgeBackend, records: list[dict], orders: str) -> list[_Task]:
    """Render every request up front, so a rubric error surfaces before any call is made."""
    identity = backend.identity()
    tasks = []
    for row, rec in enumerate(records):
        options = [("ab", rec["response_a"], rec["response_b"])]
        if orders == "both":
            options.append(("ba", rec["response_b"], rec["response_a"]))
        for order, first, second in options:
            request = JudgeRequest(prompt=rec["prompt"], first=first, second=second)
            prompt_hash = stable_hash(backend.render(request))
            key = stable_hash({"judge": identity, "input": prompt_hash})
            tasks.append(_Task(row, order, request, key, prompt_hash))
    return tasks


def _run(backend: JudgeBackend, todo: list[_Task], flush_every: int, store: JudgmentStore) -> None:
    provenance = backend.provenance()
    identity = backend.identity()
    failed = 0
    with tqdm(total=len(todo), desc=f"judging ({backend.name})", unit="judgment") as bar:
        for start in range(0, len(todo), flush_every):
            chunk = todo[start : start + flush_every]
            verdicts = backend.judge([t.request for t in chunk])
            store.put_many(
                {
                    "key": t.key,
                    "judge": backend.name,
                    "backend": identity["backend"],
                    "model": identity.get("model", identity.get("callable")),
                    "prompt_hash": t.prompt_hash,
                    **provenance,
                    "status": v.status,
                    "verdict": v.verdict,
                    "p_first": v.p_first,
                    "label_mass": v.label_mass,
                    "raw_output": v.raw_output,
                    "error": v.error,
                }
                for t, v in zip(chunk, verdicts, strict=True)
            )
            failed += sum(v.status != "ok" for v in verdicts)
            bar.update(len(chunk))
            bar.set_postfix(failed=failed)
