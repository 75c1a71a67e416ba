"""A compact PPO trainer on torch + transformers (trl 1.16 no longer ships one).

Rollouts from the policy, a sequence reward at the end of each response (a reward model,
a judge, or any function), a per-token KL penalty against the frozen SFT model, a value
head on the policy's last hidden state, GAE, whitened advantages, clipped policy and value
losses, and a penalty for responses cut off without an end token. Every step logs reward,
KL, entropy, clip fraction, value loss, response length and the KL coefficient.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from rlaif.config import PPOConfig
from rlaif.models import load_tokenizer, resolve_model
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

log = logging.getLogger(__name__)
RewardFn = Callable[[list[str], list[str]], list[float]]
"""(prompts, responses) -> one scalar reward per response."""


def train_ppo(
    prompts: Dataset, cfg: PPOConfig, *, model: str, reward_fn: RewardFn, output_dir: Path
) -> Dataset:
    """Train the policy on ``prompts`` (a ``prompt`` column); save it to ``output_dir/model``
    and return one log row per step."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    path = resolve_model(model, field="model")
    tokenizer = load_tokenizer(path, padding_side="left")
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    value_head = torch.nn.Linear(policy.config.hidden_size, 1)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    optimizer = torch.optim.AdamW(
        [*policy.parameters(), *value_head.parameters()], lr=cfg.learning_rate
    )
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    texts = list(prompts["prompt"])
    history = []
    for step in tqdm(range(cfg.steps), desc="ppo", unit="step"):
        batch = [texts[rng.randrange(len(texts))] for _ in range(cfg.rollout_batch_size)]
        roll = _rollout(policy, reference, value_head, tokenizer, batch, cfg)
        scores = torch.tensor(reward_fn(batch, roll["responses"]), dtype=torch.float32)
        raw_scores = scores.clone()
        if cfg.eos_penalty is not None:
            scores = eos_penalty(scores, roll["finished"], cfg.eos_penalty)
        mask = roll["mask"]
        rewards, kl = kl_penalized_rewards(
            scores, roll["logprobs"], roll["ref_logprobs"], mask, kl_ctl.value
        )
        advantages, returns = gae(rewards, roll["values"], mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask)
        stats = _update(policy, value_head, optimizer, roll, advantages, returns, cfg)
        seq_kl = kl.sum(-1).mean().item()
        entry = {
            "step": step + 1,
            "reward": raw_scores.mean().item(),
            "kl": seq_kl,
            "kl_coef": kl_ctl.value,
            "entropy": roll["entropy"],
            "response_length": mask.sum(-1).mean().item(),
            "truncated": 1.0 - roll["finished"].float().mean().item(),
            **stats,
        }
        history.append(entry)
        log.info("ppo step %s", json.dumps({k: round(v, 4) for k, v in entry.items()}))
        if cfg.adaptive_kl:
            kl_ctl.update(seq_kl, cfg.rollout_batch_size)
    target = output_dir / "model"
    policy.save_pretrained(target)
    tokenizer.save_pretrained(target)
    (output_dir / "ppo_log.json").write_text(json.dumps(history, indent=1))
    return Dataset.from_list(history)


def _forward(model, value_head, ids, attention, start):
    """Log-probabilities of ``ids[:, start:]``, per-token entropy and values."""
    positions = (attention.cumsum(-1) - 1).clamp_min(0)
    out = model(
        input_ids=ids,
        attention_mask=attention,
        position_ids=positions,
        output_hidden_states=value_head is not None,
    )
    logits = out.logits[:, start - 1 : -1].float()
    logp_all = logits.log_softmax(-1)
    logprobs = logp_all.gather(-1, ids[:, start:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = None
    if value_head is not None:
        values = value_head(out.hidden_states[-1][:, start - 1 : -1].float()).squeeze(-1)
    return logprobs, entropy, values


def response_mask(response: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 on response tokens up to and including the first end token, 0 after it."""
    is_eos = response == eos_token_id
    return ((is_eos.cumsum(-1) - is_eos.long()) == 0).float()


def response_logprobs(model, ids, prompt_attention, start, eos_token_id, attention=None):
    """Per-token log-probabilities of the responses in ``ids[:, start:]``; returns
    (logprobs, response mask, full attention mask)."""
    mask = response_mask(ids[:, start:], eos_token_id)
    if attention is None:
        attention = torch.cat([prompt_attention, mask.long()], dim=1)
    logprobs, _, _ = _forward(model, None, ids, attention, start)
    return logprobs, mask, attention


@torch.no_grad()
def _rollout(policy, reference, value_head, tokenizer, prompts, cfg) -> dict:
    chats = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    enc = tokenizer(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    policy.eval()
    out = policy.generate(
        **enc,
        do_sample=True,
        temperature=cfg.temperature,
        top_k=None,
        top_p=None,
        max_new_tokens=cfg.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    start = enc["input_ids"].shape[1]
    response = out[:, start:]
    finished = (response == tokenizer.eos_token_id).any(-1)
    mask = response_mask(response, tokenizer.eos_token_id)
    attention = torch.cat([enc["attention_mask"], mask.long()], dim=1)
    logprobs, entropy, values = _forward(policy, value_head, out, attention, start)
    ref_logprobs, _, _ = _forward(reference, None, out, attention, start)
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


def _update(policy, value_head, optimizer, roll, advantages, returns, cfg) -> dict:
    policy.train()
    n = roll["ids"].shape[0]
    first = {}
    totals = {"clip_fraction": 0.0, "value_loss": 0.0, "policy_loss": 0.0, "approx_kl": 0.0}
    updates = 0
    for _epoch in range(cfg.ppo_epochs):
        order = torch.randperm(n)
        for lo in range(0, n, cfg.minibatch_size):
            idx = order[lo : lo + cfg.minibatch_size]
            mask = roll["mask"][idx]
            logprobs, _, values = _forward(
                policy, value_head, roll["ids"][idx], roll["attention"][idx], roll["start"]
            )
            pl = policy_loss(logprobs, roll["logprobs"][idx], advantages[idx], mask, cfg.cliprange)
            vl, _ = value_loss(values, roll["values"][idx], returns[idx], mask, cfg.cliprange_value)
            if not first:  # the first minibatch of the first epoch is on-policy
                first = {
                    "first_ratio": pl.ratio_mean.item(),
                    "first_clip_fraction": pl.clip_fraction.item(),
                }
            loss = pl.loss + cfg.vf_coef * vl
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [*policy.parameters(), *value_head.parameters()], cfg.max_grad_norm
            )
            optimizer.step()
            totals["clip_fraction"] += pl.clip_fraction.item()
            totals["value_loss"] += vl.item()
            totals["policy_loss"] += pl.loss.item()
            totals["approx_kl"] += pl.approx_kl.item()
            updates += 1
    return {**{k: v / updates for k, v in totals.items()}, **first}
