"""ξ context noise: replacement rate, value range, identity at ξ = 0, determinism under a seeded generator."""

import pytest
import torch

from vapi.objectives import perturb_context

V = 1024


def _tokens():
    return torch.randint(0, V, (64, 256), generator=torch.Generator().manual_seed(1))


def test_changes_about_xi_of_tokens_and_stays_in_range():
    tokens = _tokens()
    out = perturb_context(tokens, 0.3, V, torch.Generator().manual_seed(0))
    assert out.shape == tokens.shape and out.dtype == tokens.dtype
    assert out.min() >= 0 and out.max() < V
    changed = (out != tokens).float().mean().item()
    assert changed == pytest.approx(0.3 * (1 - 1 / V), abs=0.01)  # a replacement may redraw the original token


def test_prob_zero_is_identity_and_draws_nothing():
    tokens = _tokens()
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert perturb_context(tokens, 0.0, V, g) is tokens
    assert torch.equal(g.get_state(), state)


def test_prob_one_redraws_everything_uniformly():
    out = perturb_context(torch.zeros(64, 256, dtype=torch.long), 1.0, 4, torch.Generator().manual_seed(0))
    assert torch.bincount(out.flatten(), minlength=4).float().div(out.numel()).sub(0.25).abs().max() < 0.02


def test_seeded_is_deterministic_and_invalid_prob_raises():
    tokens = _tokens()
    a = perturb_context(tokens, 0.5, V, torch.Generator().manual_seed(3))
    b = perturb_context(tokens, 0.5, V, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError):
        perturb_context(tokens, -0.1, V)
