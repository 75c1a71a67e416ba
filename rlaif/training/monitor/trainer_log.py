"""What the monitor reads of a trainer's own log (``state.log_history``): the reward, its
components and the reward's staleness since the previous check."""

from __future__ import annotations

from typing import Any

REWARD_KEYS = ("reward", "rewards/margins")
"""What a training log calls its reward: GRPO's and PPO's ``reward``, DPO's reward margin."""


def last_reward(history: list[dict[str, Any]], since: int) -> float | None:
    """The mean reward a trainer logged after step ``since`` (its newest when none was)."""
    logged = [
        (r.get("step", 0), next(r[k] for k in REWARD_KEYS if k in r))
        for r in history
        if any(k in r for k in REWARD_KEYS)
    ]
    recent = [v for step, v in logged if step > since] or [v for _, v in logged[-1:]]
    return round(float(sum(recent) / len(recent)), 6) if recent else None


def last_components(history: list[dict[str, Any]], since: int) -> dict[str, float]:
    """Each reward component's mean a trainer logged (``reward/<name>``) after step ``since``
    (the newest log when none was: a step's log comes after its callbacks)."""
    logged = [
        (entry.get("step", 0), {k.removeprefix("reward/"): v for k, v in entry.items()
                                if k.startswith("reward/") and not k.endswith("_std")
                                and isinstance(v, int | float) and v == v})  # NaN: no value
        for entry in history
    ]  # fmt: skip
    logged = [(step, values) for step, values in logged if values]
    recent = [values for step, values in logged if step > since] or [v for _, v in logged[-1:]]
    names = list(dict.fromkeys(name for values in recent for name in values))
    return {
        name: round(sum(v[name] for v in recent if name in v) / sum(name in v for v in recent), 6)
        for name in names
    }


def last_staleness(history: list[dict[str, Any]], since: int) -> float | None:
    """The most steps a reused judgment was stale (``judges/staleness_max``) after ``since``."""
    stale = [
        h["judges/staleness_max"]
        for h in history
        if h.get("step", 0) > since and h.get("judges/staleness_max") is not None
    ]
    return max(stale, default=None)
