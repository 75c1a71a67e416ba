"""PPO pieces against values computed by hand."""

import math

import pytest
import torch

from rlaif.training.ppo_math import (
    AdaptiveKLController,
    eos_penalty,
    gae,
    kl_penalized_rewards,
    policy_loss,
    value_loss,
    whiten,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_kl_penalized_rewards_put_the_score_on_the_last_real_token():
    logprobs = t([[-1.0, -2.0, -1.5], [-0.5, -0.5, 0.0]])
    ref = t([[-1.5, -1.0, -1.5], [-1.0, -0.5, 0.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    rewards, kl = kl_penalized_rewards(t([2.0, -1.0]), logprobs, ref, mask, kl_coef=0.1)
    # kl = logp - ref: [[0.5, -1.0, 0.0], [0.5, 0.0, (masked)]]
    assert torch.allclose(kl, t([[0.5, -1.0, 0.0], [0.5, 0.0, 0.0]]))
    assert torch.allclose(rewards, t([[-0.05, 0.1, 2.0], [-0.05, -1.0, 0.0]]))


def test_gae_by_hand():
    rewards = t([[0.0, 0.0, 1.0]])
    values = t([[0.5, 0.6, 0.7]])
    mask = t([[1, 1, 1]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    d2 = 1.0 - 0.7  # last step: no next value
    d1 = 0.0 + 0.7 - 0.6
    d0 = 0.0 + 0.6 - 0.5
    a2 = d2
    a1 = d1 + 0.95 * a2
    a0 = d0 + 0.95 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, a2])
    assert ret.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7])


def test_gae_ignores_padding():
    rewards = t([[1.0, 0.0]])
    values = t([[0.25, 9.0]])
    adv, _ = gae(rewards, values, t([[1, 0]]), gamma=0.9, lam=0.9)
    assert adv.tolist()[0] == pytest.approx([0.75, 0.0])  # the padded value never bootstraps


def test_first_minibatch_ratio_is_one_and_nothing_is_clipped():
    logprobs = t([[-1.0, -2.0], [-0.3, -0.7]])
    adv = t([[1.0, -2.0], [0.5, 3.0]])
    out = policy_loss(logprobs, logprobs.clone(), adv, t([[1, 1], [1, 1]]), clip=0.2)
    assert out.ratio_mean.item() == pytest.approx(1.0)
    assert out.clip_fraction.item() == 0.0
    assert out.approx_kl.item() == 0.0
    assert out.loss.item() == pytest.approx(-(1.0 - 2.0 + 0.5 + 3.0) / 4)


def test_clipped_objective_by_hand():
    old = t([[0.0, 0.0]])
    new = t([[math.log(1.5), math.log(0.5)]])  # ratios 1.5 and 0.5
    adv = t([[1.0, -1.0]])
    out = policy_loss(new, old, adv, t([[1, 1]]), clip=0.2)
    # token 1: max(-1*1.5, -1*1.2) = -1.2 (clipped); token 2: max(0.5, 0.8) = 0.8 (clipped)
    assert out.loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert out.clip_fraction.item() == 1.0


def test_value_loss_by_hand():
    loss, frac = value_loss(
        t([[1.0, 0.0]]), t([[0.0, 0.0]]), t([[2.0, 0.5]]), t([[1, 1]]), clip=0.2
    )
    # token 1: clipped value 0.2 -> err 3.24 vs unclipped 1.0 -> 3.24; token 2: 0.25 both
    assert loss.item() == pytest.approx(0.5 * (3.24 + 0.25) / 2)
    assert frac.item() == pytest.approx(0.5)


def test_whiten_uses_only_real_tokens():
    x = t([[1.0, 2.0, 3.0, 100.0]])
    out = whiten(x, t([[1, 1, 1, 0]]))
    assert out[0, :3].tolist() == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
    assert out[0, 3].item() == 0.0


def test_eos_penalty_only_hits_truncated_responses():
    scores = eos_penalty(t([1.0, 1.0]), torch.tensor([True, False]), penalty=-1.0)
    assert scores.tolist() == [1.0, 0.0]


def test_adaptive_kl_moves_toward_target():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(12.0, n_steps=100) == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))
    low = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert low.update(3.0, n_steps=100) == pytest.approx(0.1 * (1 - 0.2 * 100 / 10000))
