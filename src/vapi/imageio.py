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
    """images [N, 3, H, W] (float in [-1, 1] or uint8) → one uint8 [rows*(H+p)+p, nrow*(W+p)+p, 3] array.

    `nrow` is images per row, as torchvision's make_grid; the last row is padded with `pad_value`.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [N, 3, H, W], got {tuple(images.shape)}")
    x = to_uint8(images.detach()).cpu().permute(0, 2, 3, 1).numpy()  # [N, H, W, 3]
    n, h, w, _ = x.shape
    ncol = max(1, min(nrow, n))
    nrows = -(-n // ncol)
    grid = np.full((nrows * (h + padding) + padding, ncol * (w + padding) + padding, 3), pad_value, np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top: top + h, left: left + w] = x[i]
    return grid


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
