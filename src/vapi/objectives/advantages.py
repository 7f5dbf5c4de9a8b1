"""Group-relative advantages of VA-π (GRPO-style): z-score each reward within its group of G generations.

Groups are consecutive runs of G rows (image-major, row b*G + k). The scale is the *unbiased* (N-1) standard
deviation plus eps, as `torch.std` in the reference, and the result is clamped to ±clip.

Departures from the reference (advantage loop + clamp in train_c2i_grpo.py):
- the clamp happens here rather than in the loss (same numbers);
- a group whose rewards are all equal gets exactly zero advantage. The reference divides the rounding residue of
  r - mean by 1e-8 there, which can turn float noise into O(0.1) advantages.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, clip: float | None = 5.0,
                     eps: float = 1e-8) -> torch.Tensor:
    """(r - mean_g) / (std_g + eps) per consecutive group of `group_size`, clamped to ±clip. rewards: [B*G] → [B*G].

    `clip=None` skips the clamp.
    """
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 for a group standard deviation, got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    groups = rewards.view(-1, group_size)  # [B, G]
    mean = groups.mean(dim=1, keepdim=True)  # [B, 1]
    std = groups.std(dim=1, keepdim=True)  # [B, 1], unbiased
    adv = (groups - mean) / (std + eps)  # [B, G]
    constant = (groups == groups[:, :1]).all(dim=1, keepdim=True)  # [B, 1]
    adv = adv.masked_fill(constant, 0.0)
    if clip is not None:
        adv = adv.clamp(-clip, clip)
    return adv.reshape(-1)
