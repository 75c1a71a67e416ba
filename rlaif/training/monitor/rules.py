"""The monitor's stop rules (``train.monitor.stop``): which one a check fires, if any."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlaif.config import MonitorStopConfig
    from rlaif.training.monitor.record import Check

LIMITS = (
    ("max_kl", "kl"),
    ("max_length_ratio", "length_ratio"),
    ("max_repetition", "repetition"),
    ("max_refusal", "refusal"),
    ("max_attacks", "attacks"),
)
"""Each upper limit and the measure it bounds."""


def fired_rule(stop: MonitorStopConfig, earlier: list[Check], check: Check) -> str | None:
    """The rule ``check`` fires, said as the run log and ``monitor.json`` show it; None when
    it approves the policy. ``earlier``: the checks before it (``win_rate_drop`` looks back)."""
    for name, measure in LIMITS:
        limit, value = getattr(stop, name), getattr(check, measure)
        if limit is not None and value > limit:
            return f"{measure} {value:g} > {limit:g} (stop.{name})"
    if None not in (stop.min_win_rate, check.win_rate) and check.win_rate < stop.min_win_rate:
        return f"win_rate {check.win_rate:g} < {stop.min_win_rate:g} (stop.min_win_rate)"
    if stop.win_rate_drop is not None and len(earlier) + 1 >= stop.window:
        first = earlier[-(stop.window - 1)]
        rose = None not in (first.reward, check.reward) and check.reward > first.reward
        if rose and None not in (first.win_rate, check.win_rate):
            drop = first.win_rate - check.win_rate
            if drop > stop.win_rate_drop:
                return (
                    f"reward rose {first.reward:.3g} -> {check.reward:.3g} while the win rate "
                    f"fell {first.win_rate:.3g} -> {check.win_rate:.3g} over {stop.window} "
                    f"checks (stop.win_rate_drop {stop.win_rate_drop:g})"
                )
    return None
