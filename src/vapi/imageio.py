"""Image output shared by sampling and evaluation: [-1, 1] floats → uint8, PNG grids.

`to_uint8` uses LlamaGen's / ADM's rounding (`127.5 x + 128`, clamped, truncated), which is also what
`torchvision.utils.save_image(normalize=True, value_range=(-1, 1))` produces, so grids match the reference scripts.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] (any shape) → uint8 in [0, 255]; uint8 input is returned as is."""
    if images.dtype == torch.uint8:
        return images
    return (127.5 * images.float() + 128.0).clamp(0, 255).to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: int = 0) -> np.ndarray:
    """images [N, 3, H, W] (float in [-1, 1] or uint8) → one uint8 [rows*(H+p)+p, nrow*(W+p)+p, 3] array, drawn by
    `torchvision.utils.make_grid` (`nrow` images per row; the last row is padded with `pad_value`)."""
    from torchvision.utils import make_grid as tv_make_grid

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
    x = to_uint8(images.detach()).cpu()  # [N, 3, H, W] uint8
    if x.shape[0] == 1:  # torchvision returns a lone image unpadded; keep the border every other grid has
        x = torch.cat([x, torch.full_like(x, pad_value)])
        grid = tv_make_grid(x, nrow=2, padding=padding, pad_value=pad_value)[:, :, : x.shape[-1] + 2 * padding]
    else:
        grid = tv_make_grid(x, nrow=max(1, min(nrow, x.shape[0])), padding=padding, pad_value=pad_value)
    return grid.permute(1, 2, 0).contiguous().numpy()  # [H', W', 3]


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8, padding: int = 2) -> Path:
    """Write images [N, 3, H, W] in [-1, 1] as one PNG grid (`nrow` images per row); written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix or '.png'}")
    try:
        Image.fromarray(make_grid(images, nrow, padding)).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
