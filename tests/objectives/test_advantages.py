"""Group advantages: image-major groups, unbiased std, zero-std groups, clamp and input validation."""

import math

import pytest
import torch

from vapi.objectives import group_advantages

STD_1234 = math.sqrt(5 / 3)  # unbiased std of [1, 2, 3, 4]


def test_rewards_1234_by_hand():
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]), group_size=4)
    expected = torch.tensor([-1.5, -0.5, 0.5, 1.5]) / (STD_1234 + 1e-8)
    assert torch.allclose(adv, expected, atol=1e-6)


def test_groups_are_consecutive_image_major():
    per_image = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 30.0, 20.0, 40.0]])  # [B, G]
    adv = group_advantages(per_image.reshape(-1), group_size=4)
    assert torch.allclose(adv[:4], group_advantages(per_image[0], 4))
    assert torch.allclose(adv[4:], group_advantages(per_image[1], 4))
    assert adv[5] > adv[6]  # 30 > 20 within image 1


def test_equal_rewards_give_exact_zeros():
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0, 0.1, 0.1, 0.1, 0.1]), group_size=4)
    assert torch.equal(adv[4:], torch.zeros(4))


def test_clip():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.allclose(group_advantages(rewards, 4, clip=1.0),
                          torch.tensor([-1.0, -0.5 / STD_1234, 0.5 / STD_1234, 1.0]), atol=1e-6)
    outlier = torch.tensor([0.0] * 49 + [1.0])  # raw advantage (1 - 1/50) / sqrt(1/50) = 6.93
    assert group_advantages(outlier, 50, clip=None)[-1].item() == pytest.approx(0.98 / math.sqrt(0.02), rel=1e-5)
    assert group_advantages(outlier, 50)[-1].item() == 5.0


@pytest.mark.parametrize("rewards,group_size", [(torch.ones(4), 1), (torch.ones(7), 4), (torch.ones(2, 4), 4)])
def test_invalid_inputs_raise(rewards, group_size):
    with pytest.raises(ValueError):
        group_advantages(rewards, group_size)
