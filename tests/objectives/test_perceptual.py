import pytest
import torch
import torch.nn as nn

from vapi.objectives.perceptual import FeatureLPIPS, unit_normalise
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
