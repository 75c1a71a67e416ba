"""Stage 4: one preference per pair (or per prompt) from all its judgments, in TRL's format.

A pair's judgments (both orders, every judge) combine into P(a wins): their mean, or the
share of hard votes. Averaging the two orders cancels a constant position bias; hard votes
that disagree make the pair a tie (the judge followed the position, or the judges split),
dropped or kept as a soft label. With many responses per prompt, a Bradley-Terry fit over
all of a prompt's comparisons scores every response, for ``best_vs_worst`` selection.
Columnar (pandas + numpy) so a million judgments aggregate in seconds.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from datasets import Dataset

from rlaif.config import AggregateConfig
from rlaif.preferences import bradley_terry
from rlaif.preferences.bias import length_corrected

log = logging.getLogger(__name__)
_TEXT_COLUMNS = ["pair_id", "prompt_id", "prompt", "index_a", "index_b", "response_a", "response_b"]
_JUDGMENT_COLUMNS = ["pair_id", "judge", "status", "p_a", "key", "rubric_id", "rubric_hash"]


def aggregate(judgments: Dataset, cfg: AggregateConfig) -> Dataset:
    """``prompt``/``chosen``/``rejected`` (conversational) plus ``p_chosen``, ``margin``,
    ``tie`` and the provenance of every judgment behind the row."""
    frame = judgments.select_columns(
        list(dict.fromkeys(_TEXT_COLUMNS + _JUDGMENT_COLUMNS))
    ).to_pandas()
    pairs = combine(frame, cfg)
    if cfg.selection == "best_vs_worst":
        pairs = best_vs_worst(pairs)
    elif cfg.selection == "random_pairs":
        shuffled = pairs.sample(frac=1.0, random_state=cfg.seed)
        pairs = shuffled.groupby("prompt_id", sort=False).head(cfg.k).sort_index()
    dropped = {
        "no_valid_judgment": int(pairs["p_a"].isna().sum()),
        "tie": int((pairs["tie"] & pairs["p_a"].notna()).sum()) if cfg.ties == "drop" else 0,
    }
    keep = pairs["p_a"].notna()
    if cfg.ties == "drop":
        keep &= ~pairs["tie"]
    margin = (2.0 * pairs["p_a"] - 1.0).abs()
    dropped["low_margin"] = int((keep & (margin < cfg.min_margin)).sum())
    keep &= margin >= cfg.min_margin
    log.info(
        "aggregate: %d candidates -> %d preferences; dropped %s",
        len(pairs),
        int(keep.sum()),
        dropped,
    )
    return _to_dataset(pairs[keep])


def combine(frame: pd.DataFrame, cfg: AggregateConfig) -> pd.DataFrame:
    """One row per pair: texts, ``p_a`` (NaN without a valid judgment), ``tie`` and
    provenance lists."""
    texts = frame.drop_duplicates("pair_id")[_TEXT_COLUMNS].set_index("pair_id")
    valid = frame[(frame["status"] == "ok") & frame["p_a"].notna()].copy()
    if cfg.length_correction and len(valid):
        valid["p_a"] = length_corrected(valid)
    valid["vote"] = np.where(valid["p_a"] > 0.5, 1.0, np.where(valid["p_a"] < 0.5, 0.0, np.nan))
    grouped = valid.groupby("pair_id", sort=False)
    stats = grouped.agg(
        p_mean=("p_a", "mean"),
        vote_share=("vote", "mean"),
        vote_min=("vote", "min"),
        vote_max=("vote", "max"),
        n_judgments=("p_a", "size"),
    )
    stats["judges"] = grouped["judge"].unique()
    stats["rubric_ids"] = grouped["rubric_id"].unique()
    stats["rubric_hashes"] = grouped["rubric_hash"].unique()
    stats["judgment_keys"] = grouped["key"].agg(list)
    out = texts.join(stats, how="left")
    out["p_a"] = out["p_mean"] if cfg.method == "mean" else out["vote_share"].fillna(0.5)
    out.loc[out["n_judgments"].isna(), "p_a"] = np.nan
    out["tie"] = (out["vote_min"] != out["vote_max"]) | out["vote_min"].isna()
    out["n_judgments"] = out["n_judgments"].fillna(0).astype(int)
    return out.reset_index()


def best_vs_worst(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per prompt, the Bradley-Terry best response against the worst, with the model's
    P(best beats worst) as the soft label."""
    judged = pairs[pairs["p_a"].notna()]
    if judged.empty:
        return pairs.iloc[:0]
    ends = (
        pd.concat(
            [
                judged[["prompt_id", "index_a", "response_a"]].set_axis(
                    ["prompt_id", "index", "text"], axis=1
                ),
                judged[["prompt_id", "index_b", "response_b"]].set_axis(
                    ["prompt_id", "index", "text"], axis=1
                ),
            ]
        )
        .drop_duplicates(["prompt_id", "index"])
        .reset_index(drop=True)
    )
    item = {key: n for n, key in enumerate(zip(ends["prompt_id"], ends["index"], strict=True))}
    item_a = [item[k] for k in zip(judged["prompt_id"], judged["index_a"], strict=True)]
    item_b = [item[k] for k in zip(judged["prompt_id"], judged["index_b"], strict=True)]
    ends["score"] = bradley_terry.fit(item_a, item_b, judged["p_a"].to_numpy(), len(ends))
    by_prompt = ends.groupby("prompt_id", sort=False)["score"]
    best = ends.loc[by_prompt.idxmax()].set_index("prompt_id")
    worst = ends.loc[by_prompt.idxmin()].set_index("prompt_id")
    provenance = judged.groupby("prompt_id", sort=False).agg(
        prompt=("prompt", "first"),
        n_judgments=("n_judgments", "sum"),
        judges=("judges", lambda s: np.unique(np.concatenate(s.to_list()))),
        rubric_ids=("rubric_ids", lambda s: np.unique(np.concatenate(s.to_list()))),
        rubric_hashes=("rubric_hashes", lambda s: np.unique(np.concatenate(s.to_list()))),
        judgment_keys=("judgment_keys", lambda s: [k for keys in s for k in keys]),
    )
    out = provenance.join(best.add_suffix("_best")).join(worst.add_suffix("_worst"))
    out = out[out["index_best"] != out["index_worst"]]
    return pd.DataFrame(
        {
            "pair_id": [
                f"{p}:{b}-{w}"
                for p, b, w in zip(out.index, out["index_best"], out["index_worst"], strict=True)
            ],
            "prompt_id": out.index,
            "prompt": out["prompt"],
            "response_a": out["text_best"],
            "response_b": out["text_worst"],
            "p_a": bradley_terry.win_probability(out["score_best"], out["score_worst"]),
            "tie": False,
            "n_judgments": out["n_judgments"],
            "judges": out["judges"],
            "rubric_ids": out["rubric_ids"],
            "rubric_hashes": out["rubric_hashes"],
            "judgment_keys": out["judgment_keys"],
        }
    ).reset_index(drop=True)


def _to_dataset(pairs: pd.DataFrame) -> Dataset:
    a_wins = (pairs["p_a"] >= 0.5).to_numpy()
    first, second = pairs["response_a"].to_numpy(), pairs["response_b"].to_numpy()
    chosen = np.where(a_wins, first, second)
    rejected = np.where(a_wins, second, first)
    p_a = pairs["p_a"].to_numpy(dtype=float)
    p_chosen = np.where(a_wins, p_a, 1.0 - p_a)
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": p}] for p in pairs["prompt"]],
            "chosen": [[{"role": "assistant", "content": c}] for c in chosen],
            "rejected": [[{"role": "assistant", "content": r}] for r in rejected],
            "p_chosen": p_chosen.tolist(),
            "margin": (2.0 * p_chosen - 1.0).tolist(),
            "tie": pairs["tie"].astype(bool).tolist(),
            "prompt_id": pairs["prompt_id"].astype(str).tolist(),
            "pair_id": pairs["pair_id"].astype(str).tolist(),
            "n_judgments": pairs["n_judgments"].astype(int).tolist(),
            "judges": [sorted(map(str, x)) for x in pairs["judges"]],
            "rubric_ids": [sorted(map(str, x)) for x in pairs["rubric_ids"]],
            "rubric_hashes": [sorted(map(str, x)) for x in pairs["rubric_hashes"]],
            "judgment_keys": [list(map(str, x)) for x in pairs["judgment_keys"]],
        }
    )
