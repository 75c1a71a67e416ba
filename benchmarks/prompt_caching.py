"""Prompt caching: what the providers' caches hold of a night's judge input, and what that
does to preferences per dollar.

Every figure comes from the judge stage with the real ``anthropic`` and ``openai`` SDK clients
against the loopback server, whose usage reports cached tokens the way each provider does
(Anthropic: ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` at
``cache_control`` breakpoints of 1,024 tokens or more; OpenAI: ``cached_tokens`` for every
prefix of 1,024 tokens or more), priced at Anthropic's published rates for a Sonnet-class
model: $3 per million input tokens, $15 output, cache reads 0.1x, writes 1.25x (five minutes)
or 2x (an hour), batches half price.

1. Cached share: of the input of every request after each prompt's first, the share the cache
   served, on the shipped multi-turn conversations and on longer synthetic histories.
2. Preferences per dollar, pairwise in both orders online (no cache) against the other ways
   to ask, on two nights: long conversations (the prompt is what repeats) and a team's long
   judging guideline before short prompts (the rubric is what repeats). The verdicts with
   the cache are checked to be those without it, so caching keeps all of the accuracy each
   way of asking has (``benchmarks/listwise.py`` measures listwise's against pairwise's: 0.953
   or more with both orders shown, 0.942 or more with adaptive orders).

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
from importlib.resources import files
from pathlib import Path

import datasets
from bench_common import quiet
from datasets import Dataset

from rlaif.config import AggregateConfig, AnthropicJudgeConfig, JudgeConfig, OpenAIJudgeConfig
from rlaif.judges import Budget
from rlaif.judging.store import JudgmentStore
from rlaif.rubrics import BUILTIN
from rlaif.stages import aggregate, judge
from rlaif.stages.judge import prompt_cache_counts
from rlaif.testing.batch_server import LoopbackBatchServer

PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}
ANSWERS = 4


def shipped_conversations() -> list[list[dict[str, str]]]:
    path = files("rlaif.prompts") / "default_conversations.jsonl"
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines() if line]


def long_histories(n: int, turns: int) -> list[list[dict[str, str]]]:
    """Conversations of ``turns`` exchanges (about 130 tokens each) ending with a question."""
    out = []
    for p in range(n):
        history = []
        for t in range(turns):
            history.append(
                {"role": "user", "content": f"[{p}.{t}] " + f"Why is step {t} so? " * 12}
            )
            history.append({"role": "assistant", "content": f"Step {t} holds because " * 14})
        out.append([*history, {"role": "user", "content": f"So what should I do first, {p}?"}])
    return out


def short_prompts(n: int) -> list[str]:
    return [f"Request {p}: explain something useful in a few sentences." for p in range(n)]


def guideline_rubrics(folder: Path, tokens: int) -> dict[str, str]:
    """The shipped pairwise and listwise JSON rubrics with a team's judging guideline of
    about ``tokens`` tokens before the request, as an annotation guide reads."""
    rules = "".join(
        f"{i}. When both answers {topic}, prefer the one that says so plainly and shows why.\n"
        for i, topic in zip(
            range(1, 10_000),
            itertools.cycle(["are correct", "hedge", "cite numbers", "refuse", "use code"]),
        )
    )
    guide = rules[: tokens * 4]
    out = {}
    for name in ("helpful_harmless_json", "listwise_helpful_json"):
        text = (BUILTIN / f"{name}.jinja").read_text()
        head, _, body = text.partition("\n---\n")
        head = head.replace(f"name: {name}", f"name: {name}_guided")
        (folder / f"{name}_guided.jinja").write_text(
            f"{head}\n---\n<guideline>\n{guide}</guideline>\n{body}"
        )
        out[name] = str(folder / f"{name}_guided.jinja")
    return out


def night(prompts: list) -> Dataset:
    rows = []
    for p, prompt in enumerate(prompts):
        texts = [f"Reply {i}: " + "fine " * (3 * i + p % 4 + 1) for i in range(ANSWERS)]
        for i, j in itertools.combinations(range(ANSWERS), 2):
            rows.append(
                {"pair_id": f"q{p}:{i}-{j}", "prompt_id": f"q{p}", "prompt": prompt,
                 "index_a": i, "index_b": j, "response_a": texts[i], "response_b": texts[j]}
            )  # fmt: skip
    return Dataset.from_list(rows)


def judged(server, pairs, folder: Path, *, provider="anthropic", rubric, cache, batch=False,
           orders="both") -> dict:  # fmt: skip
    common = dict(
        name="priced", model="judge-model", api_key_env=None, rubric=rubric, price=PRICE,
        max_concurrency=16, prompt_cache={"enabled": cache}, batch={"enabled": batch},
    )  # fmt: skip
    spec = (
        AnthropicJudgeConfig(base_url=server.url, **common)
        if provider == "anthropic"
        else OpenAIJudgeConfig(base_url=server.openai_url, **common)
    )
    cfg = JudgeConfig(judges=[spec], orders=orders)
    with JudgmentStore(folder / "judgments.sqlite") as store:
        rows = judge(pairs, cfg, store=store, budget=Budget(), batch_dir=folder / "batches")
        while "pending" in rows["status"]:  # the next night collects (adaptive: and asks more)
            server.complete_batches()
            rows = judge(pairs, cfg, store=store, budget=Budget(), batch_dir=folder / "batches")
    prefs = aggregate(rows, AggregateConfig())
    cost = sum({k: c or 0.0 for k, c in zip(rows["key"], rows["cost_usd"], strict=True)}.values())
    return {
        "rows": rows,
        "preferences": prefs,
        "cost_usd": round(cost, 4),
        "per_usd": round(len(prefs) / cost, 1),
        "cache": prompt_cache_counts(rows),
    }


def after_first_share(rows: Dataset) -> float:
    """Of the input of every call after each prompt's first, the share the cache served."""
    calls = {r["key"]: r for r in rows if not r["cached"]}
    first: dict[str, str] = {}
    for key, r in calls.items():
        if not r["cached_input_tokens"]:
            first.setdefault(r["prompt_id"], key)
    later = [r for k, r in calls.items() if k not in set(first.values())]
    total = sum(r["input_tokens"] for r in later)
    return round(sum(r["cached_input_tokens"] or 0 for r in later) / total, 4) if total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=48, help="prompts a night")
    parser.add_argument("--turns", type=int, default=20, help="exchanges in a long history")
    parser.add_argument("--guideline-tokens", type=int, default=2000)
    args = parser.parse_args()
    quiet()
    logging.disable(logging.WARNING)
    datasets.disable_progress_bars()
    shipped = shipped_conversations()[: args.prompts]
    long = long_histories(args.prompts, args.turns)
    figures: dict = {"benchmark": "prompt_caching", "cached_share_after_first": {}, "nights": {}}
    with LoopbackBatchServer() as server, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("cached share of the input after each prompt's first request:")
        for workload, prompts in (("shipped_conversations", shipped), ("long_histories", long)):
            for provider in ("anthropic", "openai"):
                folder = root / f"{workload}-{provider}"
                rubric = "helpful_harmless_json"
                got = judged(server, night(prompts), folder, provider=provider, rubric=rubric,
                             cache=True)  # fmt: skip
                share = after_first_share(got["rows"])
                tokens = sum(got["rows"]["input_tokens"]) // len(got["rows"])
                figures["cached_share_after_first"][f"{workload}/{provider}"] = share
                print(
                    f"  {workload:<22} {provider:<10} {share:6.1%}  ({tokens} input tokens a call)"
                )

        guided = guideline_rubrics(root, args.guideline_tokens)
        nights = {
            "long_histories": (long, "helpful_harmless_json", "listwise_helpful_json"),
            "long_guideline": (short_prompts(args.prompts), guided["helpful_harmless_json"],
                               guided["listwise_helpful_json"]),
        }  # fmt: skip
        for name, (prompts, pairwise, listwise) in nights.items():
            pairs = night(prompts)
            sides = {
                "pairwise_both_orders_online": dict(rubric=pairwise, cache=False),
                "pairwise_both_orders_online_cached": dict(rubric=pairwise, cache=True),
                "listwise_online_cached": dict(rubric=listwise, cache=True),
                "listwise_batches_cached": dict(rubric=listwise, cache=True, batch=True),
                "listwise_adaptive_batches": dict(
                    rubric=listwise, cache=False, batch=True, orders="adaptive"
                ),
                "listwise_adaptive_batches_cached": dict(
                    rubric=listwise, cache=True, batch=True, orders="adaptive"
                ),
            }
            print(f"{name}: {args.prompts} prompts x {ANSWERS} answers, preferences per dollar")
            got = {s: judged(server, pairs, root / f"{name}-{s}", **kw) for s, kw in sides.items()}
            base = got["pairwise_both_orders_online"]["per_usd"]
            out = {}
            for side, g in got.items():
                out[side] = {
                    "cost_usd": g["cost_usd"],
                    "preferences": len(g["preferences"]),
                    "per_usd": g["per_usd"],
                    "over_pairwise": round(g["per_usd"] / base, 2),
                    "cached_share": g["cache"].get("cached_share", 0.0),
                }
                print(f"  {side:<36} ${g['cost_usd']:8.4f}  {len(g['preferences'])} prefs  "
                      f"{g['per_usd']:8.1f} per $  {out[side]['over_pairwise']:6.2f}x  "
                      f"cached {out[side]['cached_share']:.0%}")  # fmt: skip
            # the cache changes what is paid, never what is said
            for plain, cached in (
                ("pairwise_both_orders_online", "pairwise_both_orders_online_cached"),
                ("listwise_adaptive_batches", "listwise_adaptive_batches_cached"),
            ):
                same = (
                    got[plain]["preferences"]["p_chosen"] == got[cached]["preferences"]["p_chosen"]
                )
                out[f"{cached}_same_verdicts"] = same
                assert same, f"{name}: {cached} gave other verdicts than {plain}"
            figures["nights"][name] = out
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
