"""The pairs of a run in the order a person's label helps most, with every judge's verdicts.

First the pairs whose verdict flips with the order (a judge said A when A came first and B
when B did), then those the judges disagree on, then the rest by how close their soft label
(the mean P(A wins) over judges and orders) is to 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlaif.errors import ConfigError
from rlaif.judging.store import JudgmentStore, pair_key
from rlaif.run.run_dir import RunDir

if TYPE_CHECKING:
    from datasets import Dataset

REASONS = {
    "flip": "the verdict flips with the order",
    "disagree": "the judges disagree",
    "close": "the soft label is near 0.5",
    "rest": "the judges agree",
}
CLOSE = 0.15
"""A soft label within this of 0.5 counts as close."""


@dataclass
class Verdict:
    judge: str
    order: str
    """``ab``: A shown first; ``ba``: B shown first; ``a``/``b``: a pointwise score."""
    p_a: float | None
    """P(A wins) read from this judgment, None when it failed or was unreadable."""
    status: str
    raw: str


@dataclass
class ReviewItem:
    key: str
    """The pair's content key (:func:`rlaif.judging.store.pair_key`), what labels attach to."""
    pair_id: str
    prompt: Any
    """A string, or a conversation (a list of ``{"role", "content"}``)."""
    response_a: str
    response_b: str
    verdicts: list[Verdict] = field(default_factory=list)
    soft: float | None = None
    reason: str = "rest"

    @property
    def turns(self) -> list[dict[str, str]]:
        if isinstance(self.prompt, list):
            return [{"role": m["role"], "content": m["content"]} for m in self.prompt]
        return [{"role": "user", "content": str(self.prompt)}]


def _side(p: float) -> int:
    return (p > 0.5) - (p < 0.5)


def review_items(run_dir: Path) -> list[ReviewItem]:
    """Every judged pair of ``run_dir``, in review order."""
    from datasets import load_from_disk

    folder = RunDir(run_dir).output("judge")
    if not (folder / "state.json").is_file():
        raise ConfigError(f"{run_dir}: no judgments here; run the judge stage first")
    items: dict[str, ReviewItem] = {}
    columns = ["pair_id", "prompt", "response_a", "response_b", "judge", "order", "p_a"]
    rows = load_from_disk(str(folder)).select_columns([*columns, "status", "raw_output"])
    for row in rows:
        item = items.get(row["pair_id"])
        if item is None:
            item = items[row["pair_id"]] = ReviewItem(
                pair_key(row["prompt"], row["response_a"], row["response_b"]),
                row["pair_id"],
                row["prompt"],
                row["response_a"],
                row["response_b"],
            )
        p = row["p_a"]
        valid = row["status"] == "ok" and p is not None and not math.isnan(p)
        item.verdicts.append(
            Verdict(row["judge"], row["order"], p if valid else None, row["status"],
                    row["raw_output"] or "")
        )  # fmt: skip
    for item in items.values():
        _classify(item)
    rank = list(REASONS)
    return sorted(
        items.values(),
        key=lambda i: (rank.index(i.reason), abs((i.soft if i.soft is not None else 0.5) - 0.5)),
    )


def _classify(item: ReviewItem) -> None:
    by_judge: dict[str, list[float]] = {}
    for v in item.verdicts:
        if v.p_a is not None:
            by_judge.setdefault(v.judge, []).append(v.p_a)
    every = [p for ps in by_judge.values() for p in ps]
    item.soft = sum(every) / len(every) if every else None
    # a verdict of exactly 0.5 takes no side: only A against B counts as a flip or a split
    flips = any({_side(p) for p in ps} >= {1, -1} for ps in by_judge.values())
    sides = {_side(sum(ps) / len(ps)) for ps in by_judge.values()}
    if flips:
        item.reason = "flip"
    elif sides >= {1, -1}:
        item.reason = "disagree"
    elif item.soft is not None and abs(item.soft - 0.5) <= CLOSE:
        item.reason = "close"


def run_store(run_dir: Path) -> Path:
    """The judgment store a run used: the path its judge stage recorded, else its config's."""
    manifest = RunDir(run_dir).read_manifest()
    recorded = manifest.get("stages", {}).get("judge", {}).get("counts", {}).get("store")
    if recorded:
        return Path(recorded)
    from rlaif.config import validate_pipeline

    return validate_pipeline(manifest["config"]).judgment_store_path()


def labelled_items(run_dir: Path) -> list[tuple[ReviewItem, dict[str, Any]]]:
    """The run's pairs a person labelled, with the newest label of each."""
    items = review_items(run_dir)
    with JudgmentStore(run_store(run_dir)) as store:
        labels = store.human_labels(i.key for i in items)
    return [(i, labels[i.key]) for i in items if i.key in labels]


def human_preferences(run_dir: Path) -> Dataset:
    """The pairs of ``run_dir`` a person labelled A or B, as ``prompt``/``chosen``/``rejected``
    (what ``rlaif judge-eval`` measures judges against); ties and flags are left out."""
    from datasets import Dataset

    rows = [
        {
            "prompt": item.prompt,
            "chosen": item.response_a if label["label"] == "A" else item.response_b,
            "rejected": item.response_b if label["label"] == "A" else item.response_a,
        }
        for item, label in labelled_items(run_dir)
        if label["label"] in ("A", "B")
    ]
    if not rows:
        raise ConfigError(
            f"{run_dir}: no pair is labelled A or B yet; label some with `rlaif review {run_dir}`"
        )
    return Dataset.from_list(rows)
