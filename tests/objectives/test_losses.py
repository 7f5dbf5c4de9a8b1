"""Hand-computed checks of the PPO-clip surrogate, prior CE, k3 KL, token dropout and the combined VaPiLoss."""

import math

import pytest
import torch
import torch.nn.functional as F

from vapi.objectives import (
    VaPiLoss,
    clipped_surrogate,
    per_token_kl,
    prior_ce,
    token_dropout_mask,
    token_logprobs,
)


def _logps(shift: float, shape=(1, 3)):
    old = torch.full(shape, -2.0)
    return old + shift, old


def test_ratio_e_positive_advantage_is_clipped_to_1_2():
    new, old = _logps(1.0)  # ratio e
    loss, stats = clipped_surrogate(new, old, torch.tensor([1.0]), epsilon=0.2)
    assert torch.allclose(stats.ratio, torch.full((1, 3), math.e))
    assert torch.allclose(stats.clipped_ratio, torch.full((1, 3), 1.2))
    assert loss.item() == pytest.approx(-1.2)
    assert stats.clip_ratio.item() == 1.0


def test_ratio_e_negative_advantage_keeps_unclipped_branch():
    new, old = _logps(1.0)
    loss, stats = clipped_surrogate(new, old, torch.tensor([-1.0]), epsilon=0.2)
    assert loss.item() == pytest.approx(math.e)  # max(e, 1.2)
    assert stats.clip_ratio.item() == 0.0


def test_low_ratio_negative_advantage_is_clipped_to_0_8():
    new, old = _logps(-1.0)  # ratio 1/e
    loss, stats = clipped_surrogate(new, old, torch.tensor([-2.0]), epsilon=0.2)
    assert loss.item() == pytest.approx(2.0 * 0.8)
    assert stats.clip_ratio.item() == 1.0
    loss_pos, stats_pos = clipped_surrogate(new, old, torch.tensor([2.0]), epsilon=0.2)
    assert loss_pos.item() == pytest.approx(-2.0 / math.e)
    assert stats_pos.clip_ratio.item() == 0.0


def test_clipped_tokens_carry_no_gradient():
    old = torch.zeros(1, 2)
    new = torch.tensor([[1.0, 0.1]], requires_grad=True)  # ratios e (clipped) and e^0.1 (inside the range)
    loss, _ = clipped_surrogate(new, old, torch.tensor([1.0]), epsilon=0.2)
    loss.backward()
    assert new.grad[0, 0] == 0.0
    assert new.grad[0, 1].item() == pytest.approx(-math.exp(0.1) / 2)


def test_mask_means_over_kept_tokens_then_sequences():
    old = torch.zeros(2, 3)
    new = torch.log(torch.tensor([[1.0, 1.1, 0.9], [1.0, 1.0, 1.1]]))
    mask = torch.tensor([[True, True, False], [False, False, True]])
    loss, stats = clipped_surrogate(new, old, torch.tensor([1.0, 2.0]), epsilon=0.2, mask=mask)
    assert loss.item() == pytest.approx(((-1.0 - 1.1) / 2 + (-2.2)) / 2)
    assert not stats.per_token_loss.requires_grad


def test_prior_ce_uniform_logits_is_log_vocab_and_ignores_temperature():
    assert prior_ce(torch.zeros(2, 3, 8), torch.randint(0, 8, (2, 3))).item() == pytest.approx(math.log(8))


def test_per_token_kl_k3():
    new = torch.tensor([[0.0, -1.0]])
    kl = per_token_kl(new, torch.tensor([[0.0, 0.0]]))
    assert kl[0, 0].item() == 0.0
    assert kl[0, 1].item() == pytest.approx(math.e - 2)


def test_token_dropout_mask():
    assert token_dropout_mask((4, 5), 0.0).all()
    all_dropped = token_dropout_mask((4, 5), 1.0, torch.Generator().manual_seed(0))
    assert all_dropped[:, 0].all() and not all_dropped[:, 1:].any()
    keep = token_dropout_mask((200, 100), 0.3, torch.Generator().manual_seed(0))
    assert keep.float().mean().item() == pytest.approx(0.7, abs=0.02)
    with pytest.raises(ValueError):
        token_dropout_mask((2, 2), 1.5)


def _batch(seed=0, N=4, T=5, V=7):
    g = torch.Generator().manual_seed(seed)
    new_logits = torch.randn(N, T, V, generator=g, requires_grad=True)
    tokens = torch.randint(0, V, (N, T), generator=g)
    old_logps = token_logprobs(new_logits.detach() + 0.3 * torch.randn(N, T, V, generator=g), tokens, 0.9)
    return new_logits, tokens, old_logps, torch.randn(N, generator=g), torch.randint(0, V, (N, T), generator=g)


def test_vapi_loss_combines_terms_and_detaches_stats():
    new_logits, tokens, old_logps, adv, gt = _batch()
    ref_logits = new_logits.detach() + 0.1
    objective = VaPiLoss(epsilon=0.2, prior_weight=0.1, beta=0.05, temperature=0.9, grad_accum_steps=2)
    loss, stats = objective(new_logits, tokens, old_logps, adv, gt, ref_logits=ref_logits)
    new_logps = token_logprobs(new_logits, tokens, 0.9)
    policy, _ = clipped_surrogate(new_logps, old_logps, adv, 0.2)
    ce = F.cross_entropy(new_logits.reshape(-1, 7), gt.reshape(-1))
    kl = per_token_kl(new_logps, token_logprobs(ref_logits, tokens, 0.9)).mean()
    assert loss.item() == pytest.approx(((policy + 0.1 * ce + 0.05 * kl) / 2).item(), rel=1e-6)
    assert stats.loss.item() == pytest.approx(loss.item() * 2, rel=1e-6)
    assert stats.kl.item() == pytest.approx(kl.item(), rel=1e-6)
    assert all(not s.requires_grad for s in stats)
    loss.backward()
    assert new_logits.grad is not None and new_logits.grad.abs().sum() > 0


def test_vapi_loss_on_policy_ratio_is_one():
    new_logits, tokens, _, adv, gt = _batch()
    old_logps = token_logprobs(new_logits.detach(), tokens, 1.0)
    _, stats = VaPiLoss(prior_weight=0.0)(new_logits, tokens, old_logps, adv, gt)
    assert stats.ratio_mean.item() == pytest.approx(1.0)
    assert stats.clip_ratio.item() == 0.0
    assert stats.policy_loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6)
    assert stats.prior_ce.item() > 0  # reported even with the term off


def test_vapi_loss_validation():
    new_logits, tokens, old_logps, adv, gt = _batch()
    with pytest.raises(ValueError, match="ref_logits"):
        VaPiLoss(beta=0.1)(new_logits, tokens, old_logps, adv, gt)
    with pytest.raises(ValueError):
        VaPiLoss(grad_accum_steps=0)
    with pytest.raises(ValueError):
        VaPiLoss(prior_weight=-1.0)


def test_vapi_loss_policy_weight_zero_is_the_matched_control():
    """policy_weight 0 leaves exactly β·CE: the gradient equals that of the prior term alone."""
    new_logits, tokens, old_logps, adv, gt = _batch()
    loss, stats = VaPiLoss(policy_weight=0.0, prior_weight=0.1)(new_logits, tokens, old_logps, adv, gt)
    ce = F.cross_entropy(new_logits.reshape(-1, 7), gt.reshape(-1))
    assert loss.item() == pytest.approx(0.1 * ce.item(), rel=1e-6)
    assert stats.policy_loss.item() != 0.0  # still measured, not trained on
    (grad,) = torch.autograd.grad(loss, new_logits)
    (expected,) = torch.autograd.grad(0.1 * ce, new_logits)
    torch.testing.assert_close(grad, expected)
    with pytest.raises(ValueError):
        VaPiLoss(policy_weight=-1.0)
