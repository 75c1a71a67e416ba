"""The monitor's coordinator: when to check, and one check (answer the prompts, measure, judge,
apply the rules, record). Under ``accelerate launch`` every process answers the prompts (the
weights are the same on each), the main one judges, decides and writes, and the others take
its check, so all of them stop at the same step."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from rlaif.chat import generation_text
from rlaif.config import JudgeConfig, MonitorConfig
from rlaif.judges import Budget
from rlaif.judging.store import JudgmentStore
from rlaif.training.monitor.measures import answer_measures
from rlaif.training.monitor.record import Check, Record, summary
from rlaif.training.monitor.rules import fired_rule
from rlaif.training.monitor.trainer_log import last_reward

log = logging.getLogger(__name__)


class Monitor:
    def __init__(
        self,
        cfg: MonitorConfig,
        *,
        prompts: list[str],
        reference: str | Path,
        folder: Path,
        system_prompt: str | None = None,
        store: Path | None = None,
    ):
        if not prompts:
            raise ValueError("train.monitor: no held-out prompts to watch (prompts.eval_size)")
        self.cfg = cfg
        self.prompts = prompts[: cfg.prompts]
        self.reference_path = reference
        self.folder = folder
        self.record = Record(folder)
        self.system_prompt = system_prompt
        self.store_path = store
        self.budget = Budget(cfg.max_cost_usd)
        self.checks: list[Check] = []
        self.stopped: Check | None = None
        self._reference = None
        self._sft: list[str] | None = None
        self._sft_tokens = 0.0

    def resume(self, step: int) -> None:
        """Keep the checks up to ``step`` (where training resumes) from an earlier try."""
        self.checks = self.record.read(step)
        if _is_main():
            self.record.rewrite(self.checks)

    def reward_since_last_check(self, history: list[dict[str, Any]]) -> float | None:
        """The mean reward a trainer logged since the previous check (see :func:`last_reward`)."""
        return last_reward(history, self.checks[-1].step if self.checks else -1)

    def due(self, step: int) -> bool:
        """Whether to check at ``step``: on every ``every_steps``-th, once, until a rule fired
        (a trainer may take one more step before it stops)."""
        return (
            self.stopped is None
            and step % self.cfg.every_steps == 0
            and all(c.step != step for c in self.checks)
        )

    @torch.no_grad()
    def check(
        self,
        policy: Any,
        tokenizer: Any,
        step: int,
        reward: float | None,
        components: dict[str, float] | None = None,
        staleness: float | None = None,
    ) -> Check:
        """Measure ``policy`` now; save it when no rule fires, else mark training stopped."""
        was_training = policy.training
        policy.eval()
        # the weights as they are, in float32 like the reference: a trainer under mixed
        # precision (accelerate) wraps forward in autocast, which alone reads as KL
        autocast = policy.__dict__.pop("forward", None)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.cfg.seed + step)
                answers, tokens = self._answer(policy, tokenizer)
                kl = self._kl(policy, tokenizer)
        finally:
            if autocast is not None:
                policy.forward = autocast
        if was_training:
            policy.train()
        sft = self._sft_answers(tokenizer)
        main = _is_main()
        check = Check(
            step=step,
            reward=reward,
            kl=round(kl, 4),
            win_rate=self._win_rate(answers, sft) if main else None,
            components=components or {},
            staleness=staleness,
            **answer_measures(answers, tokens, self._sft_tokens),
        )
        check.rule = fired_rule(self.cfg.stop, self.checks, check) if main else None
        check = _from_main(check)
        self.checks.append(check)
        if main:
            self.record.append(check)
            log.info("monitor %s", json.dumps(asdict(check)))
            if check.rule is None or not self.record.approved_dir.exists():
                self.record.approve(policy, tokenizer)  # the first check keeps the start
        if check.rule is not None:
            self.stopped = check
            log.warning("monitor: %s at step %d; training stops", check.rule, step)
        return check

    def finish(self, output_dir: Path) -> dict[str, Any]:
        """After training: when a rule stopped it, the last approved policy replaces
        ``output_dir/model``; the record is copied beside it, and the summary the train stage
        reports goes to ``output_dir/monitor.json``."""
        stopped = self.stopped or next((c for c in self.checks if c.rule), None)
        out = summary(self.checks, stopped)
        if _is_main():
            self.record.hand_over(output_dir, out, stopped is not None)
        return out

    # -- what a check asks of the models and the judges -----------------------------------
    def _texts(self, tokenizer: Any) -> Any:
        chats = [generation_text(tokenizer, p, self.system_prompt) for p in self.prompts]
        side, tokenizer.padding_side = tokenizer.padding_side, "left"  # the trainer's, restored
        try:
            return tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = side

    def _answer(self, model: Any, tokenizer: Any) -> tuple[list[str], list[int]]:
        """Greedy answers to the prompts and their lengths in tokens."""
        from rlaif.training.logprobs import response_mask

        enc = self._texts(tokenizer).to(model.device)
        out = model.generate(
            **enc,
            do_sample=False,
            temperature=None,
            top_k=None,
            top_p=None,
            max_new_tokens=self.cfg.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        response = out[:, enc["input_ids"].shape[1] :]
        mask = response_mask(response, tokenizer.eos_token_id)
        texts = [
            tokenizer.decode(r[m.bool()], skip_special_tokens=True).strip()
            for r, m in zip(response, mask, strict=True)
        ]
        return texts, [int(m.sum()) for m in mask]

    def _reference_model(self, device: Any) -> Any:
        if self._reference is None:
            from transformers import AutoModelForCausalLM

            from rlaif.models.loading import resolve_model

            path = resolve_model(str(self.reference_path), field="model")
            self._reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            self._reference.eval().requires_grad_(False)
        return self._reference.to(device)

    def _sft_answers(self, tokenizer: Any) -> list[str]:
        """The SFT model's greedy answers, once (kept beside the record for a resumed run)."""
        if self._sft is None:
            path = self.folder / "sft_answers.json"
            if path.exists():
                saved = json.loads(path.read_text())
            else:
                answers, lengths = self._answer(self._reference_model("cpu"), tokenizer)
                saved = {"answers": answers, "tokens": lengths}
                path.write_text(json.dumps(saved))
            self._sft, self._sft_tokens = saved["answers"], float(sum(saved["tokens"]))
        return self._sft

    def _kl(self, policy: Any, tokenizer: Any) -> float:
        """KL(policy || SFT): log-ratio summed over a sampled answer, averaged over prompts."""
        from rlaif.training.logprobs import sampled_kl

        enc = self._texts(tokenizer).to(policy.device)
        reference = self._reference_model(policy.device)
        return sampled_kl(policy, reference, enc, tokenizer, max_new_tokens=self.cfg.max_new_tokens)

    def _win_rate(self, answers: list[str], sft: list[str]) -> float | None:
        """P(the policy's answer beats the SFT model's) by the monitor's judges, both orders;
        an answer identical to the SFT model's counts 0.5."""
        if not self.cfg.judges:
            return None
        from rlaif.judging.head_to_head import head_to_head

        ids = [f"monitor:{i}" for i in range(len(answers))]
        judges = JudgeConfig(judges=self.cfg.judges, orders="both")
        with JudgmentStore(self.store_path or self.folder / "judgments.sqlite") as store:
            got, _ = head_to_head(
                ids, ids, self.prompts, answers, sft, judges, store=store, budget=self.budget
            )
        p = [x for x in got if x is not None]
        return round(sum(p) / len(p), 4) if p else None


def _is_main() -> bool:
    """Whether this is the process that judges, decides and writes (the only one, outside
    ``accelerate launch``)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _from_main(check: Check) -> Check:
    """The main process's check, on every process (the same one where there is one)."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return check
    shared = [asdict(check)]
    torch.distributed.broadcast_object_list(shared, src=0)
    return Check(**shared[0])
