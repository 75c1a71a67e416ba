"""A compact PPO trainer on torch + transformers + accelerate (trl 1.16 no longer ships one).

Rollouts from the policy (its own ``generate``, or vLLM), a sequence reward at the end of
each response (a reward model, a judge, or any function), a per-token KL penalty against the
frozen SFT model, a value head on the policy's last hidden state, GAE, whitened advantages,
clipped policy and value losses, and a penalty for responses cut off without an end token.
Every step logs reward, KL, entropy, clip fraction, value loss, response length and the KL
coefficient.

It runs through ``accelerate`` (one process, or DDP / DeepSpeed ZeRO-1/2 under
``accelerate launch``; each process samples its own rollouts) and checkpoints every
``save_steps`` steps, resuming from the newest complete checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from datasets import Dataset

from rlaif.config import PPOConfig
from rlaif.errors import ConfigError
from rlaif.models.devices import accelerate_precision
from rlaif.models.loading import load_tokenizer, resolve_model
from rlaif.progress import tqdm
from rlaif.training.checkpoints import ppo_step_dir, ppo_steps, publish
from rlaif.training.logprobs import forward, response_mask
from rlaif.training.ppo_math import (
    AdaptiveKLController,
    eos_penalty,
    gae,
    kl_penalized_rewards,
    masked_mean,
    policy_loss,
    value_loss,
    whiten,
)
from rlaif.training.rollouts import TransformersRollouts, VllmRollouts, make_rollouts

if TYPE_CHECKING:
    from rlaif.training.monitor import Monitor

log = logging.getLogger(__name__)
RewardFn = Callable[[list[str], list[str]], list[float]]
"""(prompts, responses) -> one scalar reward per response."""
KEEP_CHECKPOINTS = 2


class PolicyWithValue(torch.nn.Module):
    """The policy and its value head as one module: accelerate (and DeepSpeed) then prepare
    one model with one optimizer."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.value_head = torch.nn.Linear(lm.config.hidden_size, 1)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, ids, attention, start):
        return forward(self.lm, self.value_head, ids, attention, start)


class _Progress:
    """What a checkpoint holds besides weights, optimizer and RNG states (accelerate saves
    those): the steps done, the log so far and the KL coefficient."""

    def __init__(self, kl_ctl: AdaptiveKLController):
        self.step = 0
        self.history: list[dict] = []
        self.kl_ctl = kl_ctl

    def state_dict(self) -> dict:
        return {"step": self.step, "history": self.history, "kl_coef": self.kl_ctl.value}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.history = list(state["history"])
        self.kl_ctl.value = state["kl_coef"]


def train_ppo(
    prompts: Dataset,
    cfg: PPOConfig,
    *,
    model: str,
    reward_fn: RewardFn,
    output_dir: Path,
    checkpoint_dir: Path | None = None,
    save_steps: int = 10,
    rollouts: TransformersRollouts | VllmRollouts | None = None,
    dtype: str = "auto",
    system_prompt: str | None = None,
    report_to: Sequence[str] = (),
    monitor: Monitor | None = None,
) -> Dataset:
    """Train the policy on ``prompts`` (a ``prompt`` column); save it to ``output_dir/model``
    and return one log row per step.

    Checkpoints go to ``checkpoint_dir/ppo/step-N`` (default ``output_dir/checkpoints``).
    ``rollouts`` is an engine the caller made and keeps; by default one is made from
    ``cfg.rollout_backend`` and closed at the end. ``dtype`` is the mixed-precision
    compute dtype (weights stay float32); under ``accelerate launch`` its config decides.
    Rollouts show each prompt after ``system_prompt``, as sampling did. Each step's log row
    also goes to the trackers in ``report_to`` (TensorBoard under the checkpoint folder).
    ``monitor`` checks the policy when due and stops training when a rule fires.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM

    launched = "ACCELERATE_MIXED_PRECISION" in os.environ
    folder = (checkpoint_dir or output_dir / "checkpoints") / "ppo"
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=None if launched else accelerate_precision(dtype),
        log_with=list(report_to) or None,
        project_dir=str(folder),
    )
    if report_to:
        settings = cfg.model_dump(mode="json").items()  # trackers take plain values only
        accelerator.init_trackers(
            "tensorboard",
            config={k: v for k, v in settings if isinstance(v, (bool, int, float, str))},
        )
    _refuse_sharded_weights(accelerator)
    set_seed(cfg.seed, device_specific=True)
    path = resolve_model(model, field="model")
    tokenizer = load_tokenizer(path, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    reference = copy.deepcopy(lm).eval().requires_grad_(False).to(accelerator.device)
    net = PolicyWithValue(lm)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate)
    net, optimizer = accelerator.prepare(net, optimizer)
    progress = _Progress(AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon))
    accelerator.register_for_checkpointing(progress)
    engine = rollouts or make_rollouts(
        cfg,
        path,
        tokenizer,
        processes=accelerator.num_processes,
        seed=cfg.seed + accelerator.process_index,
        system_prompt=system_prompt,
    )
    log.info(
        "ppo: process %d of %d on %s, %d rollouts a step with %s",
        accelerator.process_index + 1,
        accelerator.num_processes,
        accelerator.device,
        cfg.rollout_batch_size,
        type(engine).__name__,
    )
    done = ppo_steps(folder)
    if done:
        accelerator.load_state(str(done[-1]))
        engine.sync(accelerator.unwrap_model(net).lm)
        log.info("ppo: resumed from %s (step %d of %d)", done[-1], progress.step, cfg.steps)
    texts = list(prompts["prompt"])
    parts = _Parts(accelerator, net, optimizer, reference, engine, tokenizer, cfg, reward_fn)
    if monitor is not None:
        monitor.resume(progress.step)
        if monitor.due(progress.step):
            check = monitor.check(accelerator.unwrap_model(net).lm, tokenizer, progress.step, None)
            accelerator.log(check.metrics(), step=progress.step)
    try:
        for step in tqdm(
            range(progress.step, cfg.steps),
            initial=progress.step,
            total=cfg.steps,
            desc="ppo",
            unit="step",
            disable=not accelerator.is_local_main_process,
        ):
            batch = [texts[random.randrange(len(texts))] for _ in range(cfg.rollout_batch_size)]
            entry = {"step": step + 1, **_step(parts, batch, progress.kl_ctl.value)}
            progress.history.append(entry)
            progress.step = step + 1
            accelerator.log(entry, step=progress.step)
            log.info("ppo step %s", json.dumps({k: round(v, 4) for k, v in entry.items()}))
            if cfg.adaptive_kl:
                progress.kl_ctl.update(
                    entry["kl"], cfg.rollout_batch_size * accelerator.num_processes
                )
            if monitor is not None and monitor.due(progress.step):
                lm = accelerator.unwrap_model(net).lm
                reward = monitor.reward_since_last_check(progress.history)
                check = monitor.check(lm, tokenizer, progress.step, reward)
                accelerator.log(check.metrics(), step=progress.step)
                if check.rule:
                    break
            if progress.step % save_steps == 0 and progress.step < cfg.steps:
                _save_checkpoint(accelerator, folder, progress)  # the last step saves the model
    finally:
        if rollouts is None:
            engine.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        target = output_dir / "model"
        accelerator.unwrap_model(net).lm.save_pretrained(target)
        tokenizer.save_pretrained(target)
        (output_dir / "ppo_log.json").write_text(json.dumps(progress.history, indent=1))
        if monitor is not None:
            monitor.finish(output_dir)
    for tracker in accelerator.trackers:  # not end_training(): it ends the process group too
        tracker.finish()
    accelerator.wait_for_everyone()
    return Dataset.from_list(progress.history)


def _refuse_sharded_weights(accelerator) -> None:
    """Rollouts need every weight on every process, which FSDP and ZeRO-3 do not keep."""
    from accelerate.utils import DistributedType

    plugin = accelerator.state.deepspeed_plugin
    if accelerator.distributed_type == DistributedType.FSDP or (
        plugin is not None and plugin.zero_stage == 3
    ):
        raise ConfigError(
            "train.accelerate_config: PPO samples rollouts from the full weights on every "
            "process, which FSDP and DeepSpeed ZeRO-3 shard; use multi-GPU (DDP) or DeepSpeed "
            "ZeRO-1/2 for rm_ppo and d_rlaif (dpo trains under any of them)"
        )


@dataclass(frozen=True)
class _Parts:
    """What every PPO step works with."""

    accelerator: Any
    net: Any
    """The prepared ``PolicyWithValue`` (wrapped for DDP or DeepSpeed when distributed)."""
    optimizer: Any
    reference: Any
    engine: TransformersRollouts | VllmRollouts
    tokenizer: Any
    cfg: PPOConfig
    reward_fn: RewardFn


def _step(parts: _Parts, batch: list[str], kl_coef: float) -> dict:
    """One rollout-and-update iteration; returns its log entry (averaged over processes)."""
    accelerator, cfg = parts.accelerator, parts.cfg
    policy = accelerator.unwrap_model(parts.net)
    roll = _rollout(parts, batch)
    raw_scores = torch.tensor(
        parts.reward_fn(batch, roll["responses"]), dtype=torch.float32, device=roll["ids"].device
    )
    scores = raw_scores
    if cfg.eos_penalty is not None:
        scores = eos_penalty(scores, roll["finished"], cfg.eos_penalty)
    mask = roll["mask"]
    rewards, kl = kl_penalized_rewards(
        scores, roll["logprobs"], roll["ref_logprobs"], mask, kl_coef
    )
    advantages, returns = gae(rewards, roll["values"], mask, cfg.gamma, cfg.lam)
    advantages = whiten(advantages, mask)
    stats = _update(parts, roll, advantages, returns)
    parts.engine.sync(policy.lm)
    entry = {
        "reward": raw_scores.mean().item(),
        "kl": kl.sum(-1).mean().item(),
        "kl_coef": kl_coef,
        "entropy": roll["entropy"],
        "response_length": mask.sum(-1).mean().item(),
        "truncated": 1.0 - roll["finished"].float().mean().item(),
        **stats,
    }
    values = accelerator.reduce(
        torch.tensor(list(entry.values()), dtype=torch.float64, device=accelerator.device),
        reduction="mean",
    )
    return dict(zip(entry, values.tolist(), strict=True))


def _save_checkpoint(accelerator, folder: Path, progress: _Progress) -> None:
    """Weights, value head, optimizer, RNG states and progress into ``step-N``, written under
    a temporary name and renamed, so a crash mid-save leaves the previous one usable."""
    tmp = folder / f".step-{progress.step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "ppo_log.json").write_text(json.dumps(progress.history, indent=1))
        publish(tmp, ppo_step_dir(folder, progress.step), keep=KEEP_CHECKPOINTS)
    accelerator.wait_for_everyone()


@torch.no_grad()
def _rollout(parts: _Parts, prompts: list[str]) -> dict:
    accelerator, reference, tokenizer = parts.accelerator, parts.reference, parts.tokenizer
    policy = accelerator.unwrap_model(parts.net)
    batch = parts.engine.sample(policy.lm, prompts)
    out, start = batch.ids, batch.start
    response = out[:, start:]
    finished = (response == tokenizer.eos_token_id).any(-1)
    mask = response_mask(response, tokenizer.eos_token_id)
    attention = torch.cat([batch.prompt_attention, mask.long()], dim=1)
    policy.eval()
    logprobs, entropy, values = policy(out, attention, start)
    with accelerator.autocast():  # the precision the prepared policy runs in
        ref_logprobs, _, _ = forward(reference, None, out, attention, start)
    texts = [
        tokenizer.decode(r[m.bool()], skip_special_tokens=True).strip()
        for r, m in zip(response, mask, strict=True)
    ]
    return {
        "ids": out,
        "attention": attention,
        "start": start,
        "mask": mask,
        "finished": finished,
        "logprobs": logprobs,
        "ref_logprobs": ref_logprobs,
        "values": values * mask,
        "responses": texts,
        "entropy": masked_mean(entropy, mask).item(),
    }


def _update(parts: _Parts, roll: dict, advantages, returns) -> dict:
    accelerator, net, optimizer, cfg = parts.accelerator, parts.net, parts.optimizer, parts.cfg
    net.train()
    n = roll["ids"].shape[0]
    first = {}
    totals = {"clip_fraction": 0.0, "value_loss": 0.0, "policy_loss": 0.0, "approx_kl": 0.0}
    updates = 0
    for _epoch in range(cfg.ppo_epochs):
        order = torch.randperm(n).to(roll["ids"].device)
        for lo in range(0, n, cfg.minibatch_size):
            idx = order[lo : lo + cfg.minibatch_size]
            mask = roll["mask"][idx]
            logprobs, _, values = net(roll["ids"][idx], roll["attention"][idx], roll["start"])
            pl = policy_loss(logprobs, roll["logprobs"][idx], advantages[idx], mask, cfg.cliprange)
            vl, _ = value_loss(values, roll["values"][idx], returns[idx], mask, cfg.cliprange_value)
            if not first:  # the first minibatch of the first epoch is on-policy
                first = {
                    "first_ratio": pl.ratio_mean.item(),
                    "first_clip_fraction": pl.clip_fraction.item(),
                }
            loss = pl.loss + cfg.vf_coef * vl
            optimizer.zero_grad()
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            optimizer.step()
            totals["clip_fraction"] += pl.clip_fraction.item()
            totals["value_loss"] += vl.item()
            totals["policy_loss"] += pl.loss.item()
            totals["approx_kl"] += pl.approx_kl.item()
            updates += 1
    return {**{k: v / updates for k, v in totals.items()}, **first}
