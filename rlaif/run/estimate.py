"""What a run's judging will cost, before anything is spent (``rlaif run --dry-run``).

Exact where the pairs already exist in the run directory (requests are rendered and
looked up in the judgment store); otherwise estimated from the config, with responses
assumed to be ``sample.max_new_tokens`` long. Tokens are counted as characters / 4, and
answers of ``json``/``parse`` rubrics as ``max_tokens`` long (an upper bound).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rlaif.config import PipelineConfig
from rlaif.judges import JudgeRequest, build_judge
from rlaif.judging.plan import plan_requests
from rlaif.judging.schema import pair_columns
from rlaif.judging.service import due
from rlaif.judging.store import JudgmentStore
from rlaif.run.datasets_io import load_dir
from rlaif.run.run_dir import RunDir


@dataclass(frozen=True)
class JudgeEstimate:
    stage: str
    judge: str
    backend: str
    calls: int
    """Calls still to make: cached judgments are not counted."""
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    exact: bool


def estimate(cfg: PipelineConfig, run_dir: Path, store_path: Path) -> list[JudgeEstimate]:
    pairs_dir = RunDir(run_dir).output("pair")
    pairs = load_dir(pairs_dir) if pairs_dir.exists() else None
    # adaptive orders ask between one and two per pair: the estimate is its upper bound
    orders = 2 if cfg.judge.orders in ("both", "adaptive") else 1
    orders_exact = cfg.judge.orders != "adaptive"
    placeholder = "x" * (cfg.sample.max_new_tokens * 4)
    prompt = "y" * 400
    n_train = (cfg.prompts.limit or 240) - cfg.prompts.eval_size
    per_prompt = math.comb(cfg.sample.n, 2)
    if cfg.pair.strategy == "random_pairs":
        per_prompt = min(per_prompt, cfg.pair.k)
    records = (
        pairs.select_columns(pair_columns(pairs.column_names)).to_list()
        if pairs is not None
        else None
    )
    out = []
    # a dry run writes nothing: without a store yet, nothing is cached
    with JudgmentStore(store_path) if store_path.exists() else nullcontext() as store:
        for spec in cfg.judge.judges:
            backend = build_judge(spec)
            listwise = backend.mode == "listwise"
            if records is not None:
                tasks = plan_requests(
                    backend, records, cfg.judge.orders, cfg.judge.seed, cfg.judge.permutations
                )
                stored = store.get_many(t.key for t in tasks) if store else {}
                max_failures = cfg.judge.max_failures
                judge_calls = len({t.key for t in tasks if due(stored.get(t.key), max_failures)})
            elif listwise:  # one call per prompt and order shown
                judge_calls = n_train * min(cfg.judge.permutations, math.factorial(cfg.sample.n))
            else:
                judge_calls = n_train * per_prompt * orders
            # evaluation shows two answers a prompt: two orders at most, listwise too
            eval_orders = min(cfg.judge.permutations, 2) if listwise else orders
            for stage, calls, shown in (
                ("judge", judge_calls, cfg.sample.n if listwise else 2),
                ("evaluate", cfg.prompts.eval_size * eval_orders, 2),
            ):
                request = JudgeRequest(
                    prompt, placeholder, placeholder, placeholder, (placeholder,) * shown
                )
                in_tokens, out_tokens = backend.estimated_tokens(backend.render(request))
                per_call = backend.cost(in_tokens, out_tokens)
                # the judge stage may go through the provider's batch API; evaluation asks online
                discount = backend.batch_discount if stage == "judge" else 1.0
                cost = None if per_call is None else calls * per_call * discount
                out.append(
                    JudgeEstimate(
                        stage=stage,
                        judge=spec.name,
                        backend=spec.backend,
                        calls=calls,
                        input_tokens=calls * in_tokens,
                        output_tokens=calls * out_tokens,
                        cost_usd=cost,
                        exact=stage == "judge"
                        and records is not None
                        and (orders_exact or listwise),
                    )
                )
    return out
