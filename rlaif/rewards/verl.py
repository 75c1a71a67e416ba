"""The pipeline's reward inside verl, in process, where rlaif is installed on verl's workers.

In verl's config (0.9)::

    reward.custom_reward_function.path=<site-packages>/rlaif/rewards/verl.py
    reward.custom_reward_function.name=compute_score

with ``RLAIF_PIPELINE`` naming the pipeline YAML in the workers' environment (and, to share
one budget between them, ``RLAIF_REWARD_SESSION``). verl's reward loop awaits an async
``compute_score`` for every answer of a batch at once; the calls are gathered and judged as one
batch (one listwise call per prompt group, every judge call in flight together), so the loop
never waits on one answer at a time. ``compute_score_batch`` serves verl's ``batch`` manager.

The prompt is ``extra_info["question"]`` (a text or a conversation's messages, as ``rlaif
export --format verl`` writes it) and the reference answer ``ground_truth``. A score is a dict:
``score`` (the total, what verl trains on) and each component by name, which verl logs. An
answer no judge could score follows ``reward.on_failure``; ``null`` has no number to give
verl, so it raises as ``error`` does, failing the step with the reason.
"""

from __future__ import annotations

from typing import Any

from rlaif.errors import ConfigError
from rlaif.rewards.mixed import Item, ItemReward
from rlaif.rewards.service import RewardService, process_service


def service() -> RewardService:
    """This process's reward, built on first use from ``$RLAIF_PIPELINE``."""
    return process_service("rlaif's verl reward")


def item(solution_str: str, ground_truth: Any, extra_info: dict | None) -> Item:
    """What verl passes for one answer, as a reward item."""
    info = extra_info or {}
    if "question" not in info:
        raise ConfigError(
            "rlaif's verl reward: extra_info has no 'question' (the prompt the judges see); "
            "export the data with `rlaif export --format verl`, or add it to extra_info"
        )
    prompt = info["question"]
    if not isinstance(prompt, str):
        prompt = [{"role": m["role"], "content": m["content"]} for m in prompt]
    return Item(prompt, solution_str, str(ground_truth) if ground_truth else None)


def _step(extra_info: dict | None) -> int | None:
    step = (extra_info or {}).get("global_step")
    return int(step) if isinstance(step, int | float) else None


def _score(reward: ItemReward) -> dict[str, float]:
    if reward.total is None:
        reason = next((r for r in reward.reasons.values() if r), "no judgment")
        raise RuntimeError(f"rlaif reward: no score for this answer ({reason})")
    return {"score": reward.total, **{k: v for k, v in reward.components.items() if v is not None}}


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    **_: Any,
) -> dict[str, float]:
    """One answer's score, judged together with the others verl awaits at the same time
    (verl passes more keyword arguments, such as ``reward_router_address``; they are not
    needed here)."""
    got = await service().ascore([item(solution_str, ground_truth, extra_info)], _step(extra_info))
    return _score(got[0])


def compute_score_sync(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    **_: Any,
) -> dict[str, float]:
    """One answer, blocking: for a caller that needs a plain function (verl's older
    per-item manager, which asks one answer at a time)."""
    got = service().score([item(solution_str, ground_truth, extra_info)], _step(extra_info))
    return _score(got[0])


def compute_score_batch(
    data_sources: list[str],
    solution_strs: list[str],
    ground_truths: list[Any],
    extra_infos: list[dict | None],
    **_: Any,
) -> list[dict[str, float]]:
    """A whole batch's scores, for verl's ``batch`` reward manager."""
    items = [
        item(s, g, e) for s, g, e in zip(solution_strs, ground_truths, extra_infos, strict=True)
    ]
    steps = {_step(e) for e in extra_infos}
    got = service().score(items, steps.pop() if len(steps) == 1 else None)
    return [_score(r) for r in got]
