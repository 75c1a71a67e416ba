"""What a run's judging will cost, before anything is spent (``rlaif run --dry-run``).

Exact where the pairs already exist in the run directory (requests are rendered and
looked up in the judgment store); otherwise estimated from the config, with responses
assumed to be ``sample.max_new_tokens`` long. Tokens are counted as characters / 4, and
answers of ``json``/``parse`` rubrics as ``max_tokens`` long (an upper bound). Where a judge
asks its provider to cache what a prompt's requests share (``prompt_cache``), every request
after a prompt's first is counted as reading that part from the cache and the first as
writing it, when it is long enough to be cached. A cascade's strong judge is asked about
the pairs the cheap judges leave unsure: counted exactly once their answers are all stored,
and until then as if asked about every pair.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from rlaif.chat import transcript
from rlaif.config import PipelineConfig
from rlaif.judges import Judge, JudgeRequest, build_judge
from rlaif.judges.api import ApiJudge
from rlaif.judging.checklists import writer_tasks
from rlaif.judging.plan import plan_requests
from rlaif.judging.schema import pair_columns
from rlaif.judging.service import cascade_calls, due
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
    cached_input_tokens: int = 0
    """Input tokens read from the provider's prompt cache."""
    cost_uncached_usd: float | None = None
    """What the calls would cost without the prompt cache."""


def estimate(cfg: PipelineConfig, run_dir: Path, store_path: Path) -> list[JudgeEstimate]:
    pairs_dir = RunDir(run_dir).output("pair")
    pairs = load_dir(pairs_dir) if pairs_dir.exists() else None
    orders = 2 if cfg.judge.orders in ("both", "adaptive") else 1
    placeholder = "x" * (cfg.sample.max_new_tokens * 4)
    n_train = (cfg.prompts.limit or 240) - cfg.prompts.eval_size
    records = (
        pairs.select_columns(pair_columns(pairs.column_names)).to_list()
        if pairs is not None
        else None
    )
    # the run's own prompts where its pairs exist (their length decides what is cached)
    prompt = "y" * 400
    if records:
        lengths = {r["prompt_id"]: len(transcript(r["prompt"])) for r in records}
        prompt = "y" * (sum(lengths.values()) // len(lengths))
    out = []
    # a dry run writes nothing: without a store yet, nothing is cached
    with JudgmentStore(store_path) if store_path.exists() else nullcontext() as store:
        backends = {spec.name: build_judge(spec) for spec in cfg.judge.judges}
        for spec in cfg.judge.judges:
            backend = backends[spec.name]
            listwise = backend.mode == "listwise"
            checklist = backend.mode in ("checklist", "checklist_items")
            judge_calls, exact = _judge_calls(backend, cfg, records, store, n_train)
            if cfg.judge.cascade is not None and spec.name == cfg.judge.cascade.strong:
                # asked about the unsure pairs only: at most every pair until that is known
                known = None
                if records is not None and store is not None:
                    known = cascade_calls(backends, records, cfg.judge, store)
                exact = known is not None
                judge_calls = known if exact else judge_calls
            # a checklist is written once per prompt; its items are asked once per answer
            eval_calls = cfg.prompts.eval_size * (2 if backend.mode == "checklist_items" else 1)
            # evaluation shows two answers a prompt: two orders at most, listwise too
            eval_orders = min(cfg.judge.permutations, 2) if listwise else orders
            n_prompts = len({r["prompt_id"] for r in records}) if records else n_train
            for stage, calls, shown, prompts in (
                ("judge", judge_calls, cfg.sample.n if listwise else 2, n_prompts),
                (
                    "evaluate",
                    eval_calls if checklist else cfg.prompts.eval_size * eval_orders,
                    2,
                    cfg.prompts.eval_size,
                ),
            ):
                request = JudgeRequest(
                    prompt,
                    placeholder,
                    placeholder,
                    placeholder,
                    (placeholder,) * shown,
                    items=("z" * 80,) * 5,
                )
                in_tokens, out_tokens = backend.estimated_tokens(backend.render(request))
                per_call = backend.cost(in_tokens, out_tokens)
                # the judge stage may go through the provider's batch API; evaluation asks online
                discount = backend.batch_discount if stage == "judge" else 1.0
                uncached = None if per_call is None else calls * per_call * discount
                shared = _cached_tokens(backend, request, calls // max(prompts, 1))
                reads = max(calls - prompts, 0) if shared else 0
                cost = uncached
                if per_call is not None and reads:
                    read = backend.cost(in_tokens, out_tokens, shared, 0)
                    write = backend.cost(in_tokens, out_tokens, 0, shared)
                    cost = (reads * read + (calls - reads) * write) * discount
                out.append(
                    JudgeEstimate(
                        stage=stage,
                        judge=spec.name,
                        backend=spec.backend,
                        calls=calls,
                        input_tokens=calls * in_tokens,
                        output_tokens=calls * out_tokens,
                        cost_usd=cost,
                        exact=stage == "judge" and exact,
                        cached_input_tokens=reads * shared,
                        cost_uncached_usd=uncached,
                    )
                )
    return out


def _cached_tokens(backend: Judge, request: JudgeRequest, sharing: int) -> int:
    """The tokens of ``request`` that every request about its prompt shares, where the judge
    asks its provider to cache them, they are long enough to be cached, and the ``sharing``
    requests about a prompt pay for the cache write; else 0."""
    if not isinstance(backend, ApiJudge) or not backend.caches() or not backend.write_pays(sharing):
        return 0
    messages = backend.render(request)
    shared = sum(len(m["content"]) for m in messages[:-1]) + backend.shared(request)[1]
    return shared // 4 if shared // 4 >= backend.cfg.prompt_cache.min_tokens else 0


ORDERED = ("pairwise", "listwise")
"""The modes ``orders: adaptive`` asks fewer orders of."""


def _judge_calls(
    backend: Judge,
    cfg: PipelineConfig,
    records: list[dict] | None,
    store: JudgmentStore | None,
    n_train: int,
) -> tuple[int, bool]:
    """The judge stage's calls still to make for ``backend``, and whether that is exact: the
    planned keys not in the store once the pairs exist (a checklist's items: one call per
    distinct answer, at most), else a count from the config."""
    judge = cfg.judge
    if backend.mode == "checklist_items":
        if records is None:
            return n_train * cfg.sample.n, False
        return len({(r["prompt_id"], r[f"response_{s}"]) for r in records for s in "ab"}), False
    if records is not None:
        if backend.mode == "checklist":
            tasks = writer_tasks(backend, records)
        else:
            tasks = plan_requests(backend, records, judge.orders, judge.seed, judge.permutations)
        stored = store.get_many(t.key for t in tasks) if store else {}
        due_keys = {t.key for t in tasks if due(stored.get(t.key), judge.max_failures)}
        # adaptive orders ask between one order and all: the count is its upper bound
        return len(due_keys), judge.orders != "adaptive" or backend.mode not in ORDERED
    if backend.mode == "checklist":
        return n_train, False
    if backend.mode == "listwise":  # one call per prompt and order shown
        return n_train * min(judge.permutations, math.factorial(cfg.sample.n)), False
    per_prompt = math.comb(cfg.sample.n, 2)
    if cfg.pair.strategy == "random_pairs":
        per_prompt = min(per_prompt, cfg.pair.k)
    return n_train * per_prompt * (2 if judge.orders in ("both", "adaptive") else 1), False
