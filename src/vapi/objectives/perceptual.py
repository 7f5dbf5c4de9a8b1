"""An LPIPS-style perceptual distance on any network with `stage_outputs(x) → [features per stage]`.

d(x, y) = Σ_stages mean_{h,w} ‖ f̂_s(x)[:, h, w] − f̂_s(y)[:, h, w] ‖², f̂ = the channel vector unit-normalised at each
position. This is LPIPS (Zhang et al. 2018) without its learned per-channel linear heads (all weights 1), so any
small demo-trained classifier (`vapi pretrain features`) can serve as the backbone when the real LPIPS backbone is
not cached. Use a network that does NOT evaluate the run: a reward on the evaluation network's features would let
post-training game the metric.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def unit_normalise(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """f [N, C, H, W] → the same with every channel vector scaled to unit length (as LPIPS's normalize_tensor)."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class FeatureLPIPS(nn.Module):
    """Frozen; call under torch.no_grad() for rewards. forward(x [N,3,H,W], y [N,3,H,W]) → [N] distances."""

    def __init__(self, net: nn.Module):
        super().__init__()
        if not hasattr(net, "stage_outputs"):
            raise TypeError(f"{type(net).__name__} has no stage_outputs(x): use a vapi classifier folder")
        self.net = net.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        first, inverse = distinct_runs(y)  # the G samples of an image share its target: its features once
        fys = [f[inverse] for f in self.net.stage_outputs(y[first])]
        total = x.new_zeros(x.shape[0])  # [N]
        for fx, fy in zip(self.net.stage_outputs(x), fys):  # [N, C_s, H_s, W_s]
            total = total + (unit_normalise(fx) - unit_normalise(fy)).pow(2).sum(dim=1).mean(dim=(1, 2))
        return total


def distinct_runs(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y [N, ...] → (first [M]: the index where each run of equal consecutive rows starts, inverse [N]: the run of
    each row), so that y[first][inverse] == y."""
    starts = torch.ones(len(y), dtype=torch.bool, device=y.device)  # [N]
    starts[1:] = (y[1:] != y[:-1]).flatten(1).any(1)
    return starts.nonzero().squeeze(1), starts.cumsum(0) - 1
