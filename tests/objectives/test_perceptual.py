import pytest
import torch
import torch.nn as nn

from vapi.objectives.perceptual import FeatureLPIPS, distinct_runs, unit_normalise
from vapi.objectives.rewards import RewardConfig


class TwoStages(nn.Module):
    def stage_outputs(self, x):
        return [x, x[:, :2, ::2, ::2] * 3.0]


def test_feature_lpips_hand_computed():
    x = torch.zeros(1, 3, 2, 2)
    y = torch.zeros(1, 3, 2, 2)
    x[0, 0] = 1.0  # every position: unit vector e0
    y[0, 1] = 2.0  # every position: unit vector e1 after normalisation
    d = FeatureLPIPS(TwoStages())(x, y)
    # stage 1: ‖e0 − e1‖² = 2 at each position, mean 2; stage 2 (channels 0, 1, one position): also 2
    assert d.tolist() == pytest.approx([4.0])
    assert FeatureLPIPS(TwoStages())(x, x).tolist() == pytest.approx([0.0])
    assert unit_normalise(y).pow(2).sum(1).allclose(torch.ones(1, 2, 2))


def test_perceptual_needs_a_path():
    with pytest.raises(ValueError, match="perceptual_path"):
        RewardConfig(perceptual=1.0)


class CountingConv(nn.Module):
    """Two conv stages that count the images they see."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.seen = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, stride=2, padding=1), 0

    def stage_outputs(self, x):
        self.seen += len(x)
        h = self.a(x).relu()
        return [h, self.b(h)]


def test_distinct_runs_and_targets_shared_by_a_group_are_scored_once():
    y = torch.tensor([[1.0], [1.0], [2.0], [1.0], [1.0]])
    first, inverse = distinct_runs(y)
    assert first.tolist() == [0, 2, 3] and inverse.tolist() == [0, 0, 1, 2, 2] and torch.equal(y[first][inverse], y)
    net = CountingConv()
    targets = torch.randn(3, 3, 8, 8).repeat_interleave(4, 0)  # [B*G]: 3 images × G 4
    samples = torch.randn(12, 3, 8, 8)
    with torch.no_grad():
        got = FeatureLPIPS(net)(samples, targets)
        assert net.seen == 12 + 3  # the samples, and each distinct target once
        want = torch.zeros(12)
        for fx, fy in zip(net.stage_outputs(samples), net.stage_outputs(targets)):
            want += (unit_normalise(fx) - unit_normalise(fy)).pow(2).sum(1).mean((1, 2))
    assert torch.allclose(got, want, atol=1e-6)
