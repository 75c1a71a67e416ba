"""The arithmetic of RLHF-style PPO (Ziegler et al. 2019; Ouyang et al. 2022), as pure
tensor functions, so each piece is checked against hand-computed values.

Shapes: ``(batch, tokens)`` over response tokens, with ``mask`` 1 on real tokens and 0 on
padding after the end of a response.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise to unit variance over the real tokens (and zero mean, by default)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def eos_penalty(scores: torch.Tensor, finished: torch.Tensor, penalty: float) -> torch.Tensor:
    """Add ``penalty`` (negative) to the score of responses cut off before an end token."""
    return torch.where(finished, scores, scores + penalty)


def kl_penalized_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * (log pi - log pi_ref) on every token, plus the sequence
    score on the last real token. Returns (rewards, per-token KL)."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = mask.sum(-1).long().clamp_min(1) - 1
    rewards[torch.arange(len(scores), device=scores.device), last] += scores
    return rewards * mask, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation backwards over each response; returns
    (advantages, returns), with returns = advantages + values."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros_like(running)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m
        advantages[:, t] = running
        next_value = values[:, t] * m
    return advantages, (advantages + values) * mask


@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor
    clip_fraction: torch.Tensor
    approx_kl: torch.Tensor
    ratio_mean: torch.Tensor


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> PolicyLoss:
    """Clipped surrogate objective (as a loss to minimise)."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return PolicyLoss(
        loss=masked_mean(torch.maximum(unclipped, clipped), mask),
        clip_fraction=masked_mean((clipped > unclipped).float(), mask),
        approx_kl=0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask),
        ratio_mean=masked_mean(ratio, mask),
    )


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss; returns (loss, fraction of tokens where clipping was active)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped_err = (values - returns) ** 2
    clipped_err = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_err, clipped_err), mask)
    return loss, masked_mean((clipped_err > unclipped_err).float(), mask)


class AdaptiveKLController:
    """Adjust the KL coefficient toward a target KL (Ziegler et al. 2019, eq. 2)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = max(-0.2, min(0.2, current_kl / self.target - 1.0))
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
