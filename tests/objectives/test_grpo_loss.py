"""GRPO loss by hand: on-policy ratio 1 gives −mean(A); the clip and the k3 KL as in TRL."""
import math

import pytest
import torch

from vapi.objectives.grpo import GRPOLoss, guided_logits


def test_on_policy_loss_is_minus_mean_advantage():
    logits = torch.randn(3, 4, 6)
    tokens = torch.randint(0, 6, (3, 4))
    old = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    adv = torch.tensor([1.0, -2.0, 0.5])
    loss, stats = GRPOLoss(beta=0.0)(logits, tokens, old, adv)
    assert loss.item() == pytest.approx(-adv.mean().item(), abs=1e-6)
    assert stats.ratio_mean.item() == pytest.approx(1.0) and stats.clip_ratio.item() == 0.0


def test_clip_and_kl_by_hand():
    V = 2
    new = torch.zeros(1, 1, V)  # p = [0.5, 0.5]
    tokens = torch.zeros(1, 1, dtype=torch.long)
    old = torch.full((1, 1), math.log(0.5) - 1.0)  # ratio = e
    ref = torch.tensor([[[math.log(0.25), math.log(0.75)]]])
    loss, stats = GRPOLoss(epsilon=0.2, beta=0.5)(new, tokens, old, torch.tensor([1.0]), ref)
    delta = math.log(0.25) - math.log(0.5)
    kl = math.exp(delta) - delta - 1
    assert stats.kl.item() == pytest.approx(kl, rel=1e-5)
    assert loss.item() == pytest.approx(-1.2 + 0.5 * kl, rel=1e-5)  # the ratio e is clipped to 1.2
    assert stats.clip_ratio.item() == 1.0
    with pytest.raises(ValueError, match="ref_logits"):
        GRPOLoss(beta=0.1)(new, tokens, old, torch.tensor([1.0]))


def test_guidance():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert guided_logits(c, u, 3.0).item() == 4.0 and guided_logits(c, u, 1.0).item() == 2.0
