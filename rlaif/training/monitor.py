"""``train.monitor``: watch the policy while it trains, apart from its reward, and stop it.

A reward can be hacked (answers that grow without end, a phrase the judge likes); the KL
penalty only slows that. The monitor answers a fixed set of held-out prompts greedily every
``every_steps`` steps (and once before the first, so step 0 is the SFT model) and measures the
answers against the SFT model's: length ratio, repetition, refusals, KL(policy || SFT) from
sampled answers, and with judges of its own the win rate. Every check is appended to
``monitor.jsonl`` (beside the checkpoints, so a resumed run keeps them) and the run log. A check
no stop rule objects to is approved, and the policy is saved as it is; when a rule fires,
training stops and the last approved policy becomes ``train/model``.

The same :class:`Monitor` serves every trainer: TRL's (DPO, GRPO) through
:class:`MonitorCallback`, the PPO loop by calling :meth:`Monitor.check` itself. Under
``accelerate launch`` every process answers the prompts (the weights are the same on each),
the main one judges, decides and writes, and the others take its check, so all of them stop at
the same step.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rlaif.chat import generation_text
from rlaif.config import JudgeConfig, MonitorConfig
from rlaif.judges import Budget
from rlaif.judging.audit import attack_marks
from rlaif.judging.store import JudgmentStore

log = logging.getLogger(__name__)
REFUSAL = re.compile(
    r"\b(I can(?:no|')t|I cannot|I'm (?:not able|unable)|I am (?:not able|unable)|I won't|"
    r"I will not|as an AI)\b",
    re.IGNORECASE,
)
REWARD_KEYS = ("reward", "rewards/margins")
"""What a training log calls its reward: GRPO's and PPO's ``reward``, DPO's reward margin."""


@dataclass
class Check:
    step: int
    reward: float | None
    kl: float
    length_ratio: float
    repetition: float
    refusal: float
    win_rate: float | None
    rule: str | None = None
    """The stop rule this check fired, None when it approved the policy."""
    attacks: float = 0.0
    """The share of answers that carry the mark of a judge attack ``rlaif judge-audit`` tries
    (a forged delimiter, a claimed verdict, an appeal to the evaluator, an empty answer)."""
    components: dict[str, float] = field(default_factory=dict)
    """Each reward component's mean since the previous check (``reward:`` components), so a
    check shows which part of the reward moved."""
    staleness: float | None = None
    """The most steps between a judgment the reward reused from the store and the step that
    reused it, since the previous check (an off-policy trainer's rewards grow stale)."""

    def metrics(self) -> dict[str, float]:
        """What the trackers (``train.report_to``) get, under ``monitor/``."""
        measured = {
            "kl": self.kl,
            "length_ratio": self.length_ratio,
            "repetition": self.repetition,
            "refusal": self.refusal,
            "attacks": self.attacks,
            "win_rate": self.win_rate,
            "reward": self.reward,
            **{f"reward/{name}": value for name, value in self.components.items()},
            "staleness": self.staleness,
        }
        return {f"monitor/{k}": v for k, v in measured.items() if v is not None}


def repetition(text: str) -> float:
    """The share of the answer's word 3-grams that repeat an earlier one."""
    words = text.split()
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


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
        self.system_prompt = system_prompt
        self.store_path = store
        self.budget = Budget(cfg.max_cost_usd)
        self.checks: list[Check] = []
        self.stopped: Check | None = None
        self._reference = None
        self._sft: list[str] | None = None
        self._sft_tokens = 0.0

    # -- the record ------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.folder / "monitor.jsonl"

    @property
    def approved_dir(self) -> Path:
        return self.folder / "approved"

    def resume(self, step: int) -> None:
        """Keep the checks up to ``step`` (where training resumes) from an earlier try."""
        if self.log_path.exists():
            rows = [json.loads(line) for line in self.log_path.read_text().splitlines() if line]
            self.checks = [Check(**r) for r in rows if r["step"] <= step]
        if _is_main():
            self.folder.mkdir(parents=True, exist_ok=True)
            kept = self.log_path.with_suffix(".tmp")
            kept.write_text("".join(json.dumps(asdict(c)) + "\n" for c in self.checks))
            kept.replace(self.log_path)

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

    # -- a check ---------------------------------------------------------------------------
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
                answers, lengths = self._answer(policy, tokenizer, sample=False)
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
            length_ratio=round(sum(lengths) / max(self._sft_tokens, 1e-9), 4),
            repetition=round(sum(map(repetition, answers)) / len(answers), 4),
            refusal=round(sum(bool(REFUSAL.search(a)) for a in answers) / len(answers), 4),
            win_rate=self._win_rate(answers, sft) if main else None,
            attacks=round(sum(bool(attack_marks(a)) for a in answers) / len(answers), 4),
            components=components or {},
            staleness=staleness,
        )
        check.rule = self._rule(check) if main else None
        check = _from_main(check)
        self.checks.append(check)
        if main:
            with self.log_path.open("a") as fh:
                fh.write(json.dumps(asdict(check)) + "\n")
            log.info("monitor %s", json.dumps(asdict(check)))
            if check.rule is None or not self.approved_dir.exists():
                self._save(policy, tokenizer)  # the first check keeps the start in any case
        if check.rule is not None:
            self.stopped = check
            log.warning("monitor: %s at step %d; training stops", check.rule, step)
        return check

    def _rule(self, check: Check) -> str | None:
        stop = self.cfg.stop
        limits = (
            ("max_kl", check.kl, "kl"),
            ("max_length_ratio", check.length_ratio, "length_ratio"),
            ("max_repetition", check.repetition, "repetition"),
            ("max_refusal", check.refusal, "refusal"),
            ("max_attacks", check.attacks, "attacks"),
        )
        for name, value, label in limits:
            limit = getattr(stop, name)
            if limit is not None and value > limit:
                return f"{label} {value:g} > {limit:g} (stop.{name})"
        if None not in (stop.min_win_rate, check.win_rate) and check.win_rate < stop.min_win_rate:
            return f"win_rate {check.win_rate:g} < {stop.min_win_rate:g} (stop.min_win_rate)"
        if stop.win_rate_drop is not None and len(self.checks) + 1 >= stop.window:
            first = self.checks[-(stop.window - 1)]
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

    def _texts(self, tokenizer: Any) -> Any:
        chats = [generation_text(tokenizer, p, self.system_prompt) for p in self.prompts]
        side, tokenizer.padding_side = tokenizer.padding_side, "left"  # the trainer's, restored
        try:
            return tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tokenizer.padding_side = side

    def _answer(self, model: Any, tokenizer: Any, *, sample: bool) -> tuple[list[str], list[int]]:
        enc = self._texts(tokenizer).to(model.device)
        out = model.generate(
            **enc,
            do_sample=sample,
            temperature=1.0 if sample else None,
            top_k=None,
            top_p=None,
            max_new_tokens=self.cfg.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        response = out[:, enc["input_ids"].shape[1] :]
        from rlaif.training.logprobs import response_mask

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
                answers, lengths = self._answer(
                    self._reference_model("cpu"), tokenizer, sample=False
                )
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

    def _save(self, policy: Any, tokenizer: Any) -> None:
        tmp = self.folder / ".approved.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if self.approved_dir.exists():
            shutil.rmtree(self.approved_dir)
        tmp.rename(self.approved_dir)

    # -- the end ---------------------------------------------------------------------------
    def finish(self, output_dir: Path) -> dict[str, Any]:
        """After training: when a rule stopped it, the last approved policy replaces
        ``output_dir/model``; the record is copied beside it, and the summary the train stage
        reports goes to ``output_dir/monitor.json``."""
        approved = [c for c in self.checks if c.rule is None]
        stopped = self.stopped or next((c for c in self.checks if c.rule), None)
        # the policy kept: the last approved one after a stop (the start, if none was), else the
        # last checked
        kept = (approved[-1:] or self.checks[:1]) if stopped is not None else self.checks[-1:]
        summary: dict[str, Any] = {
            "checks": len(self.checks),
            "last": asdict(self.checks[-1]) if self.checks else None,
            "kept_win_rate": kept[0].win_rate if kept else None,
        }
        if stopped is not None:
            summary |= {
                "stopped": stopped.rule,
                "stopped_at": stopped.step,
                "kept_step": kept[0].step,
            }
        if not _is_main():
            return summary
        shutil.copyfile(self.log_path, output_dir / "monitor.jsonl")
        if stopped is not None:
            target = output_dir / "model"
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(self.approved_dir, target)
        (output_dir / "monitor.json").write_text(json.dumps(summary, indent=1))
        return summary


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


def watch_training(trainer: Any, monitor: Monitor, tokenizer: Any) -> None:
    """Give ``trainer`` a callback that checks the policy when the monitor is due, sends each
    check to the trainer's trackers, and stops training when a rule fires."""
    from transformers import TrainerCallback

    class MonitorCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            monitor.resume(state.global_step)
            if monitor.due(state.global_step):
                self._check(state, control, model)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if monitor.due(state.global_step):
                self._check(state, control, model)

        def _check(self, state, control, model) -> None:
            reward = monitor.reward_since_last_check(state.log_history)
            since = monitor.checks[-1].step if monitor.checks else -1
            components = last_components(state.log_history, since)
            stale = [
                h["judges/staleness_max"]
                for h in state.log_history
                if h.get("step", 0) > since and h.get("judges/staleness_max") is not None
            ]
            check = monitor.check(
                model, tokenizer, state.global_step, reward, components, max(stale, default=None)
            )
            # to the trackers only: the trainer's own log and its metric buffers stay as they
            # are (the handler's on_log clears the step's should_log, which would drop the
            # trainer's own log of every checked step)
            should_log = control.should_log
            trainer.callback_handler.on_log(trainer.args, state, control, check.metrics())
            control.should_log = should_log
            if check.rule is not None:
                control.should_training_stop = True

    trainer.add_callback(MonitorCallback())
