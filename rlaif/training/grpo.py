"""GRPO with the pipeline's judges as a live reward (``trl.GRPOTrainer``).

Each step samples a group of completions per prompt from the policy; every completion is
judged against the SFT model's two answers to the same prompt (those of the prompt's first
preference) by the judge stage's own function, so the judges, rubrics, orders, judgment store
and budget are those of the judge stage: a completion judged before is not paid again, and a
crash loses no paid answer. The reward is P(completion beats an SFT answer), averaged over
both answers, orders and judges (a pointwise rubric scores each answer alone, and the reward
is the score gap on the same 0-1 scale). GRPO compares rewards within a group, so the SFT
answers set no level, only a common yardstick; two of them (the judge's preferred and its
dispreferred one) place it mid-way, where a completion's reward says most.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from datasets import Dataset

from rlaif.errors import ConfigError
from rlaif.hashing import stable_hash
from rlaif.judges import Budget
from rlaif.models import load_tokenizer, resolve_model
from rlaif.stages.judge import judge
from rlaif.store import JudgmentStore
from rlaif.training.checkpoints import no_final_checkpoint
from rlaif.training.trl_args import tracking_callbacks, train_and_save, trainer_args

if TYPE_CHECKING:
    from rlaif.config import JudgeConfig
    from rlaif.training.job import TrainJob

log = logging.getLogger(__name__)
NEUTRAL = 0.5
"""The reward of a completion no judge could answer for (budget reached, judge failed):
no push either way."""


def train_grpo(job: TrainJob, preferences: Dataset) -> Dataset:
    """Train with GRPO on the preferences' prompts; save the policy to ``output_dir/model``,
    the judges' per-step account to ``output_dir/judge_log.json``; return the training log."""
    from trl import GRPOConfig, GRPOTrainer

    if job.judges is None or job.store is None:
        raise ConfigError("train: method 'grpo' needs the pipeline's judges and judgment store")
    grpo = job.cfg.grpo
    folder = job.checkpoint_dir / "grpo"
    model_path = resolve_model(job.model, field="model")
    shared = trainer_args(
        output_dir=folder,
        seed=job.cfg.seed,
        save_steps=job.cfg.save_steps,
        dtype=job.cfg.dtype,
        logging_steps=grpo.logging_steps,
        report_to=job.cfg.report_to,
    )
    shared.pop("dataset_num_proc")  # GRPO prepares no dataset up front
    args = GRPOConfig(
        learning_rate=grpo.learning_rate,
        max_steps=grpo.max_steps,
        beta=grpo.beta,
        num_generations=grpo.num_generations,
        per_device_train_batch_size=grpo.per_device_train_batch_size,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        **shared,
    )
    with JudgmentStore(job.store) as store:
        reward = JudgeReward(job.judges, store, Budget(job.judges.max_cost_usd))
        trainer = GRPOTrainer(
            model=str(model_path),
            reward_funcs=[reward],
            args=args,
            train_dataset=grpo_prompts(preferences),
            processing_class=load_tokenizer(model_path, padding_side="left"),
            callbacks=[no_final_checkpoint(), *tracking_callbacks(job.cfg.report_to, folder)],
        )
        reward.trainer = trainer
        history = train_and_save(trainer, "grpo", folder, job.output_dir)
    if trainer.is_world_process_zero():
        (job.output_dir / "judge_log.json").write_text(json.dumps(reward.steps, indent=1))
    return history


def grpo_prompts(preferences: Dataset) -> Dataset:
    """One row per prompt of the preferences: the conversation GRPO prompts the policy with,
    its text as the judges see it, and the SFT answers completions are judged against."""
    seen: dict[str, dict[str, Any]] = {}
    for row in preferences.select_columns(["prompt", "chosen", "rejected"]):
        text = row["prompt"][-1]["content"]
        if text not in seen:
            seen[text] = {
                "prompt": row["prompt"],
                "prompt_text": text,
                "baselines": [row["chosen"][-1]["content"], row["rejected"][-1]["content"]],
            }
    return Dataset.from_list(list(seen.values()))


class JudgeReward:
    """A ``trl`` reward function that asks the judge stage about each completion; it keeps
    one account per call (``steps``: judgments, cache hits, cost, unanswered)."""

    __name__ = "judge"  # trl logs this reward as rewards/judge/...

    def __init__(self, judges: JudgeConfig, store: JudgmentStore, budget: Budget) -> None:
        self.judges, self.store, self.budget = judges, store, budget
        self.steps: list[dict[str, Any]] = []
        self.trainer: Any = None

    def __call__(
        self,
        prompts: list,
        completions: list,
        prompt_text: list[str],
        baselines: list[list[str]],
        **_: Any,
    ) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        asked: dict[str, tuple[str, str, str]] = {}
        pairs_of = []  # each completion's pairs: it against each SFT answer
        for prompt, text, answers in zip(prompt_text, texts, baselines, strict=True):
            ids = [stable_hash([prompt, text, answer])[:16] for answer in answers]
            asked.update(zip(ids, ((prompt, text, answer) for answer in answers), strict=True))
            pairs_of.append(ids)
        pairs = Dataset.from_dict(
            {
                "pair_id": list(asked),
                "prompt_id": [stable_hash(p)[:12] for p, _, _ in asked.values()],
                "prompt": [p for p, _, _ in asked.values()],
                "index_a": [0] * len(asked),
                "index_b": [1] * len(asked),
                "response_a": [t for _, t, _ in asked.values()],
                "response_b": [b for _, _, b in asked.values()],
            }
        )
        rows = judge(pairs, self.judges, store=self.store, budget=self.budget)
        p_a: dict[str, list[float]] = defaultdict(list)
        for pair_id, p in zip(rows["pair_id"], rows["p_a"], strict=True):
            if p is not None:
                p_a[pair_id].append(p)
        got = [[p for i in ids for p in p_a[i]] for ids in pairs_of]
        self._account(rows, sum(not g for g in got))
        return [sum(g) / len(g) if g else NEUTRAL for g in got]

    def _account(self, rows: Dataset, unanswered: int) -> None:
        cached = sum(rows["cached"])
        paid = [c or 0 for c, hit in zip(rows["cost_usd"], rows["cached"], strict=True) if not hit]
        entry = {
            "step": self.trainer.state.global_step if self.trainer is not None else None,
            "judgments": len(rows),
            "cache_hit_rate": round(cached / len(rows), 4) if len(rows) else 0.0,
            "cost_usd": round(sum(paid), 6),
            "unanswered": unanswered,
        }
        self.steps.append(entry)
        log.info("grpo judge %s", json.dumps(entry))
        if unanswered:
            log.warning(
                "grpo: %d completion(s) got no judgment (budget or judge failures); they count "
                "as %.1f",
                unanswered,
                NEUTRAL,
            )
