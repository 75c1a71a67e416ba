"""How well a judge setup agrees with people, with and without each debiasing step.

Takes a labelled preference file (``prompt``/``chosen``/``rejected``, or HH-RLHF's whole
dialogues in ``chosen``/``rejected``), shows each pair to the pipeline's judges in both
orders (the human-preferred answer placed first or second at random), and reports accuracy
against the human label for: one order only (what most pipelines do), both orders
averaged, order-inconsistent pairs dropped, length correction on top, and what adaptive
orders would have asked (with its share of the calls); plus the judges' position and length
bias.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, load_dataset, load_from_disk

from rlaif.config import AggregateConfig, JudgeConfig
from rlaif.debias import cascade
from rlaif.debias.adaptive_orders import select
from rlaif.debias.bias import judge_report
from rlaif.debias.calibration import Calibration, expected_calibration_error, fit, log_loss
from rlaif.debias.combine import combine
from rlaif.errors import ConfigError
from rlaif.judging.service import judge
from rlaif.judging.store import JudgmentStore

_ASSISTANT = "\n\nAssistant:"
log = logging.getLogger(__name__)


def load_labelled(path: str | Path, limit: int | None = None, seed: int = 0) -> Dataset:
    """``prompt``, ``chosen``, ``rejected`` as plain text, whatever the file's flavour."""
    path = Path(path)
    if path.is_dir():
        raw = load_from_disk(str(path))
    else:
        kind = next(
            (
                k
                for s, k in (
                    (".jsonl", "json"),
                    (".json", "json"),
                    (".csv", "csv"),
                    (".parquet", "parquet"),
                )
                if s in path.suffixes
            ),
            None,
        )
        if kind is None or not path.is_file():
            raise ConfigError(
                f"{path}: expected a .jsonl(.gz), .json, .csv or .parquet file, "
                "or a save_to_disk folder"
            )
        raw = load_dataset(kind, data_files=str(path), split="train")
    missing = [c for c in ("chosen", "rejected") if c not in raw.column_names]
    if missing:
        raise ConfigError(
            f"{path}: no column(s) {', '.join(missing)}; columns are: {', '.join(raw.column_names)}"
        )
    if limit is not None and limit < len(raw):
        raw = raw.select(sorted(random.Random(seed).sample(range(len(raw)), limit)))
    rows, skipped = [], []
    for n, rec in enumerate(raw):
        if "prompt" in rec:
            parts = tuple(_text(rec[k]) for k in ("prompt", "chosen", "rejected"))
        else:
            parts = _split_dialogue(rec["chosen"], rec["rejected"])
        if parts is None or parts[1] == parts[2]:
            skipped.append(n + 1)
            continue
        rows.append(dict(zip(("prompt", "chosen", "rejected"), parts, strict=True)))
    if skipped:
        log.warning(
            "%s: skipped %d row(s) whose answers could not be told apart (rows %s)",
            path,
            len(skipped),
            ", ".join(map(str, skipped[:10])),
        )
    return Dataset.from_list(rows)


def judge_eval(
    labelled: Dataset,
    judges: JudgeConfig,
    store: JudgmentStore,
    seed: int = 0,
    calibrate: str | None = None,
    holdout: float = 0.5,
) -> dict:
    """Accuracy per debiasing step and each judge's bias; with ``calibrate`` (a method of
    :mod:`rlaif.debias.calibration`) also each judge's calibration, fitted on a
    ``1 - holdout`` share of the pairs and reported on the rest (under ``calibration``, the
    fits in ``fits``)."""
    rng = random.Random(seed)
    a_is_chosen = [rng.random() < 0.5 for _ in range(len(labelled))]
    pairs = Dataset.from_dict(
        {
            "pair_id": [f"h{i}:0-1" for i in range(len(labelled))],
            "prompt_id": [f"h{i}" for i in range(len(labelled))],
            "prompt": labelled["prompt"],
            "index_a": [0] * len(labelled),
            "index_b": [1] * len(labelled),
            "response_a": [
                c if a else r
                for c, r, a in zip(
                    labelled["chosen"], labelled["rejected"], a_is_chosen, strict=True
                )
            ],
            "response_b": [
                r if a else c
                for c, r, a in zip(
                    labelled["chosen"], labelled["rejected"], a_is_chosen, strict=True
                )
            ],
        }
    )
    # every judge on every pair in both orders: a cascade is measured from these below
    every = judges.model_copy(update={"orders": "both", "cascade": None})
    judgments = judge(pairs, every, store=store)
    truth = dict(zip(pairs["pair_id"], a_is_chosen, strict=True))
    table = judgments.with_format("arrow")[:]
    # one order: each pair as shown first (a score per answer has no order to drop)
    first_only = judgments.filter(lambda r: r["order"] in ("ab", "a", "b"))
    first_only = first_only.with_format("arrow")[:]
    variants = {
        "one_order": _accuracy(combine(first_only, AggregateConfig(ties="keep")), truth, False),
        "both_orders": _accuracy(combine(table, AggregateConfig(ties="keep")), truth, False),
        "both_orders_ties_dropped": _accuracy(combine(table, AggregateConfig()), truth, True),
        "length_corrected": _accuracy(
            combine(table, AggregateConfig(ties="keep", length_correction=True)), truth, False
        ),
        "adaptive_orders": _adaptive_accuracy(judgments, judges, truth),
        **(_cascade_accuracy(judgments, judges, truth) if judges.cascade else {}),
    }
    result = {
        "pairs": len(labelled),
        "accuracy": variants,
        "bias": judge_report(judgments.to_pandas()),
    }
    if calibrate is not None:
        fits = calibrate_judges(judgments.to_pandas(), truth, calibrate, holdout, seed)
        result["calibration"] = {name: figures for name, (_, figures) in fits.items()}
        result["fits"] = {name: cal for name, (cal, _) in fits.items()}
    return result


def describe(result: dict, judges: list, folder: Path) -> list[str]:
    """The terminal's account of a judge-eval; writes each fitted calibration into
    ``folder`` and says which judge config to point at it."""
    lines = [f"{result['pairs']} human-labelled pairs, judges: {', '.join(j.name for j in judges)}"]
    for name, figures in result["accuracy"].items():
        calls = f"  calls {figures['calls']}" if "calls" in figures else ""
        lines.append(
            f"  {name:<26} accuracy {figures['accuracy']}  coverage {figures['coverage']}{calls}"
        )
    for name, figures in result["bias"]["judges"].items():
        lines.append(f"  judge {name}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    for name, cal in result.get("fits", {}).items():
        f = result["calibration"][name]
        path = cal.save(folder / f"{name}.json")
        lines.append(
            f"  calibration {name} ({f['method']}, fit on {f['n_fit']}, reported on "
            f"{f['n_heldout']}): ECE {f['ece_before']} -> {f['ece_after']}, log-loss "
            f"{f['log_loss_before']} -> {f['log_loss_after']}, agreement {f['agreement']}; "
            f"set calibration: {path} on judge '{name}'"
        )
    return lines


def calibrate_judges(
    judgments: pd.DataFrame, truth: dict[str, bool], method: str, holdout: float, seed: int
) -> dict[str, tuple[Calibration, dict]]:
    """Per judge: the fit on the pairs not held out, and its figures on the held-out ones
    (ECE and log-loss of P(first) before and after; agreement with people of the calibrated
    both-orders probability, a tie counting half)."""
    pair_ids = sorted(truth)
    held = set(random.Random(seed).sample(pair_ids, round(len(pair_ids) * holdout)))
    ok = judgments[
        (judgments["status"] == "ok")
        & judgments["order"].isin(["ab", "ba"])
        & judgments["p_a"].notna()
    ]
    out = {}
    for name, rows in ok.groupby("judge", sort=True):
        ab = (rows["order"] == "ab").to_numpy()
        p_a = rows["p_a"].to_numpy(dtype=float)
        p_first = np.where(ab, p_a, 1 - p_a)
        a_chosen = rows["pair_id"].map(truth).to_numpy(dtype=bool)
        first_won = np.where(ab, a_chosen, ~a_chosen)
        is_held = rows["pair_id"].isin(held).to_numpy()
        if is_held.all() or not is_held.any():
            raise ConfigError(
                f"judge '{name}': {len(set(rows['pair_id']))} judged pairs cannot be split "
                f"into a fit part and a held-out part of {holdout:.0%}; label more pairs"
            )
        cal = fit(str(name), p_first[~is_held], first_won[~is_held], method)
        calibrated = cal.first(p_first)
        p_a_cal = pd.Series(np.where(ab, calibrated, 1 - calibrated)[is_held])
        per_pair = p_a_cal.groupby(rows["pair_id"].to_numpy()[is_held]).mean()
        right = [0.5 if p == 0.5 else float((p > 0.5) == truth[pid]) for pid, p in per_pair.items()]
        agreement = round(float(np.mean(right)), 4)
        cal = replace(cal, agreement=agreement)
        hp, hy = p_first[is_held], first_won[is_held]
        out[str(name)] = (
            cal,
            {
                "method": method,
                "n_fit": int((~is_held).sum()),
                "n_heldout": int(is_held.sum()),
                "ece_before": round(expected_calibration_error(hp, hy), 4),
                "ece_after": round(expected_calibration_error(cal.first(hp), hy), 4),
                "log_loss_before": round(log_loss(hp, hy), 4),
                "log_loss_after": round(log_loss(cal.first(hp), hy), 4),
                "agreement": agreement,
            },
        )
    return out


def _adaptive_accuracy(judgments: Dataset, judges: JudgeConfig, truth: dict[str, bool]) -> dict:
    """Accuracy of what ``orders: adaptive`` would have asked, and its calls as a share of
    both orders'."""
    settings = judges.adaptive
    asked = select(
        judgments.to_pandas(),
        threshold=settings.threshold,
        bias_share=settings.bias_sample,
        seed=judges.seed,
        escalate_to=settings.escalate_to,
    )
    primary = sum(j.name != settings.escalate_to for j in judges.judges)
    table = Dataset.from_pandas(asked, preserve_index=False).with_format("arrow")[:]
    return {
        **_accuracy(combine(table, AggregateConfig(ties="keep")), truth, False),
        "calls": round(len(asked) / (2 * len(truth) * primary), 4),
    }


def _cascade_accuracy(judgments: Dataset, judges: JudgeConfig, truth: dict[str, bool]) -> dict:
    """Each judge's own accuracy (both orders) and the cascade's: the strong judge's verdict
    where the others leave a pair unsure, theirs elsewhere; with the strong judge's calls as a
    share of asking it about every pair."""
    rule = judges.cascade
    rows = judgments.to_list()
    out = {}
    for spec in judges.judges:
        own = Dataset.from_list([r for r in rows if r["judge"] == spec.name])
        out[f"judge_{spec.name}"] = _accuracy(
            combine(own.with_format("arrow")[:], AggregateConfig(ties="keep")), truth, False
        )
    settings = {"threshold": rule.threshold, "flips": rule.flips, "disagreement": rule.disagreement}
    unsure = cascade.unsure_pairs([r for r in rows if r["judge"] != rule.strong], **settings)
    decided = Dataset.from_list(cascade.select(rows, rule.strong, **settings))
    out["cascade"] = {
        **_accuracy(combine(decided.with_format("arrow")[:], AggregateConfig(ties="keep")),
                    truth, False),
        "calls": round(len(unsure) / len(truth), 4),
    }  # fmt: skip
    return out


def _accuracy(pairs, truth: dict[str, bool], drop_ties: bool) -> dict:
    ids = pairs["pair_id"].to_pylist()
    p_a = pairs["p_a"].to_numpy(zero_copy_only=False)
    tie = pairs["tie"].to_numpy(zero_copy_only=False)
    keep = ~np.isnan(p_a) & (~tie if drop_ties else True)
    a_true = np.array([truth[i] for i in ids], dtype=bool)
    score = np.where(p_a > 0.5, a_true, np.where(p_a < 0.5, ~a_true, 0.5)).astype(float)
    kept = score[keep]
    return {
        "accuracy": round(float(kept.mean()), 4) if len(kept) else None,
        "coverage": round(float(keep.mean()), 4) if len(keep) else None,
    }


def _text(value: object) -> str:
    if isinstance(value, list):  # conversational: the last message is the answer
        return "\n".join(m["content"] for m in value) if len(value) > 1 else value[-1]["content"]
    return str(value)


def _split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str] | None:
    """HH-RLHF: two dialogues that share a prefix up to an assistant turn; the prompt is that
    prefix and the answers are what follows it (None when they share no assistant turn)."""
    common = 0
    for x, y in zip(chosen, rejected, strict=False):
        if x != y:
            break
        common += 1
    cut = chosen.rfind(_ASSISTANT, 0, common + len(_ASSISTANT))
    if cut <= 0 or rejected[cut : cut + len(_ASSISTANT)] != _ASSISTANT:
        return None
    start = cut + len(_ASSISTANT)
    return chosen[:cut].strip(), chosen[start:].strip(), rejected[start:].strip()
