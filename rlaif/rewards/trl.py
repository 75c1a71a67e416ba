"""The pipeline's reward for a user's own ``trl.GRPOTrainer``::

    from rlaif.rewards import TrlReward

    reward = TrlReward.from_yaml("pipeline.yaml", reference_column="answer")
    trainer = GRPOTrainer(model=..., reward_funcs=[reward], train_dataset=dataset, ...)

Any prompt column TRL reads works: text, or conversational (chat messages; a system message
is left out of what the judges see). TRL hands every dataset column to a reward function, so
the reference answer comes from the column named (``reference_column``, else the pipeline's
``reward.reference_column`` or ``prompts.reference_column``); without one, comparisons rank
each prompt's completions against each other. TRL awaits an async reward function on its own
event loop, beside its other reward functions, and this one judges in a worker thread, so the
loop is never blocked. Each component's mean and spread go to TRL's trackers (``reward/NAME``
and ``reward/NAME_std``) and, with ``log_dir``, to ``reward_log.jsonl`` there, which ``rlaif
report`` draws.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rlaif.chat import Prompt, plain
from rlaif.errors import ConfigError
from rlaif.rewards.mixed import Item, MixedReward
from rlaif.rewards.service import RewardService

LOG_NAME = "reward_log.jsonl"


def judged_prompt(prompt: Any) -> Prompt:
    """A trainer's prompt as the judges see it: its text, or its conversation without a
    system message."""
    if isinstance(prompt, str):
        return prompt
    return plain(
        [{"role": m["role"], "content": m["content"]} for m in prompt if m["role"] != "system"]
    )


def completion_text(completion: Any) -> str:
    """A completion's text: TRL gives a string, or the assistant's messages."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content", "")) for m in completion if m.get("role") == "assistant")


class TrlReward:
    """An async ``reward_funcs`` entry for ``trl.GRPOTrainer`` over a :class:`MixedReward`
    (built by :meth:`from_yaml` from a pipeline, through a :class:`RewardService`, or handed
    one directly, as rlaif's own GRPO does)."""

    def __init__(
        self,
        reward: MixedReward,
        *,
        reference_column: str | None = None,
        name: str = "rlaif",
        service: RewardService | None = None,
    ):
        self.reward = reward
        self.reference_column = reference_column
        self.service = service
        self.__name__ = name  # what TRL logs it as: rewards/<name>/mean

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        overrides: list[str] | None = None,
        *,
        reference_column: str | None = None,
        log_dir: str | Path | None = None,
        name: str = "rlaif",
        **options: Any,
    ) -> TrlReward:
        """From a pipeline YAML; ``log_dir`` (e.g. the trainer's ``output_dir``) keeps the
        per-step account. The reference column defaults to the pipeline's
        ``reward.reference_column``, else its ``prompts.reference_column``."""
        log_path = Path(log_dir) / LOG_NAME if log_dir is not None else None
        service = RewardService.from_yaml(path, overrides, log_path=log_path, **options)
        cfg = service.cfg
        column = reference_column or cfg.reward.reference_column or cfg.prompts.reference_column
        return cls(service.reward, reference_column=column, name=name, service=service)

    def items(self, prompts: list, completions: list, columns: dict[str, Any]) -> list[Item]:
        references: list | None = None
        if self.reference_column is not None:
            if self.reference_column not in columns:
                shown = ", ".join(sorted(k for k in columns if not k.startswith("_"))) or "none"
                raise ConfigError(
                    f"reward: the dataset has no column '{self.reference_column}' "
                    f"(reference_column); its columns are: {shown}"
                )
            references = columns[self.reference_column]
        return [
            Item(
                judged_prompt(p),
                completion_text(c),
                None if references is None or references[n] is None else str(references[n]),
            )
            for n, (p, c) in enumerate(zip(prompts, completions, strict=True))
        ]

    async def __call__(
        self,
        prompts: list,
        completions: list,
        trainer_state: Any = None,
        log_metric: Any = None,
        **columns: Any,
    ) -> list[float | None]:
        step = getattr(trainer_state, "global_step", None)
        items = self.items(prompts, completions, columns)
        score = self.service.score_now if self.service is not None else self.reward.rewards
        got = await asyncio.to_thread(score, items, step)
        if log_metric is not None and self.reward.steps:
            entry = self.reward.steps[-1]
            for name, stats in entry["components"].items():
                log_metric(f"reward/{name}", stats["mean"])
                log_metric(f"reward/{name}_std", stats["std"])
            judged = entry.get("judges", [])
            if judged:  # what the judges did this step, and how stale what they reused was
                log_metric("judges/cost_usd", sum(j["cost_usd"] for j in judged))
                log_metric("judges/unanswered", sum(j["unanswered"] for j in judged))
                log_metric("judges/staleness_max", max(j.get("staleness_max", 0) for j in judged))
        return [r.total for r in got]

    def close(self) -> None:
        if self.service is not None:
            self.service.close()
        else:
            self.reward.close()
