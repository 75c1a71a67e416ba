"""A verl custom reward function that asks ``rlaif serve-reward`` for its rewards.

In verl's config: ``custom_reward_function.path=<this file>`` and
``custom_reward_function.name=compute_score`` (one answer a call) or ``compute_score_batch``
(with ``reward_model.reward_manager=batch``: one request a batch, cheaper). The server's
address comes from ``RLAIF_REWARD_URL`` (default ``http://127.0.0.1:8765``), and a token the
server was started to require (``--token-env``) from ``RLAIF_REWARD_TOKEN``. It needs only the
standard library, so verl's workers need not install rlaif. The prompt is read from
``extra_info["question"]`` (a text, or a conversation's messages) and the label from
``ground_truth``, as ``rlaif export --format verl`` writes them.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None
) -> float:
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info])[0]


def compute_score_batch(
    data_sources: list[str],
    solution_strs: list[str],
    ground_truths: list[str],
    extra_infos: list[dict | None],
) -> list[float]:
    body = {
        "prompts": [(info or {}).get("question", "") for info in extra_infos],
        "responses": list(solution_strs),
        "labels": [truth or None for truth in ground_truths],
    }
    return [float(r) for r in _post(body)["rewards"]]


def _post(body: dict[str, Any]) -> dict[str, Any]:
    url = os.environ.get("RLAIF_REWARD_URL", "http://127.0.0.1:8765").rstrip("/")
    headers = {"Content-Type": "application/json"}
    if os.environ.get("RLAIF_REWARD_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['RLAIF_REWARD_TOKEN']}"
    request = urllib.request.Request(
        f"{url}/get_reward", data=json.dumps(body).encode(), headers=headers
    )
    timeout = float(os.environ.get("RLAIF_REWARD_TIMEOUT", "600"))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)
