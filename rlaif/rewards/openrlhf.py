"""The pipeline's reward inside OpenRLHF, in process: ``--reward.remote_url`` naming a ``.py``
file makes OpenRLHF call its ``reward_func(queries, prompts, labels)`` in a worker thread for
each rollout, with no HTTP and no server. ``rlaif export --format openrlhf`` writes that file
(``rlaif_reward.py``, two lines importing this function); ``RLAIF_PIPELINE`` names the
pipeline YAML in the rollout workers' environment (and ``RLAIF_REWARD_SESSION`` one budget for
all of them).

OpenRLHF decodes the query (prompt and response) with special tokens kept and may have cut a
long prompt from the left, while it sends the whole templated prompt: the response is read
back with the policy's chat template (:class:`rlaif.rewards.turns.TurnText`), whatever was
cut, and the judges see the user's words. Calls from OpenRLHF's threads arrive one rollout at
a time and are judged together (:class:`rlaif.rewards.service.RewardService`).

The answer is what OpenRLHF's remote reward server would send: ``rewards`` and ``scores``
(the total) and ``extra_logs`` (the judges' account and each component's mean, numbers
OpenRLHF logs). An answer no judge could score follows ``reward.on_failure``; ``null`` and
``error`` raise, and OpenRLHF leaves the rollout without a reward, which fails the step.
"""

from __future__ import annotations

import threading
from typing import Any

from rlaif.rewards.mixed import Item, flat_account
from rlaif.rewards.service import RewardService, process_service
from rlaif.rewards.turns import TurnText

_text: TurnText | None = None
_text_lock = threading.Lock()


def _service() -> tuple[RewardService, TurnText]:
    """This process's reward and the policy's chat template, built on first use (once:
    OpenRLHF calls the reward file from every thread of its pool at the same time)."""
    global _text
    service = process_service("rlaif's OpenRLHF reward")
    if _text is None:
        with _text_lock:
            if _text is None:
                from rlaif.models.loading import load_tokenizer, resolve_model

                model = resolve_model(service.cfg.model, field="model")
                _text = TurnText(load_tokenizer(model))
    return service, _text


def items(text: TurnText, queries: list[str], prompts: list[str], labels: list[Any]) -> list[Item]:
    """OpenRLHF's rollouts as reward items: each response read back out of its query."""
    return [
        Item(text.prompt(p), text.clean(text.response(q, p)), str(label) if label else None)
        for q, p, label in zip(queries, prompts, labels, strict=True)
    ]


def reward_func(queries: list[str], prompts: list[str], labels: list[Any]) -> dict[str, Any]:
    """OpenRLHF's reward function: the rollouts' rewards, judged with whatever other rollouts
    are being rewarded at the same time."""
    service, text = _service()
    got = service.score(items(text, queries, prompts, labels))
    missing = [r for r in got if r.total is None]
    if missing:
        reason = next((r for r in missing[0].reasons.values() if r), "no judgment")
        raise RuntimeError(f"rlaif reward: {len(missing)} rollout(s) got no score ({reason})")
    rewards = [r.total for r in got]
    extra = flat_account(service.steps[-1]) if service.steps else {}
    return {"rewards": rewards, "scores": rewards, "extra_logs": extra}
