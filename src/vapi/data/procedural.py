"""ProceduralShapes: the embedded, class-conditional demo dataset (no download, CPU friendly).

Ten classes, each a shape family with its own colour family (disk/red, square/blue, triangle/green, ring/yellow,
plus/magenta, striped disk/cyan, bar/orange, two disks/purple, half-disk/lime, checker square/pink). Every image
draws a random position, scale, rotation and colour jitter, sits on a two-colour gradient background, is modulated by
a sinusoidal texture and gets a little pixel noise. Edges are anti-aliased with a one-pixel soft clamp of a signed
distance function, so the images have the smooth edges a VQ tokenizer sees in real data rather than staircases.

Image `i` depends only on `(seed, i)`: it is rendered from its own `numpy.random.Generator(SeedSequence([seed, i]))`,
so any index is generated on its own (DataLoader workers, resume, sharding all agree) and the label is `i %
num_classes` (exactly balanced). Rendering is float64 and quantised to uint8 like a real 8-bit image, which makes
`save_as_image_folder` -> `ImageFolderDataset` an exact round trip; float64 keeps platform-dependent last-bit
differences of `sin`/`exp` from ever flipping a quantised value.

Run: `python -m vapi.data.procedural OUT_DIR --num-images 10000 --image-size 32` writes an ImageFolder any `vapi`
command can read (`data.kind=imagefolder data.path=OUT_DIR`), or use `data.kind=procedural` directly.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vapi.data.transforms import uint8_to_tensor

# (shape, colour family, base hue in [0, 1)). Order defines the label ids.
CLASSES: tuple[tuple[str, str, float], ...] = (
    ("disk", "red", 0.00),
    ("square", "blue", 0.62),
    ("triangle", "green", 0.33),
    ("ring", "yellow", 0.15),
    ("plus", "magenta", 0.85),
    ("striped_disk", "cyan", 0.50),
    ("bar", "orange", 0.07),
    ("two_disks", "purple", 0.75),
    ("half_disk", "lime", 0.25),
    ("checker_square", "pink", 0.93),
)
PIXEL_NOISE_STD = 0.02  # on the [0, 1] scale, ~5/255: enough to break flat regions, small next to the texture


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """Scalar HSV -> RGB in [0, 1] (colorsys semantics, returned as an array for broadcasting)."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _box(u: np.ndarray, v: np.ndarray, bu: float, bv: float) -> np.ndarray:
    """Signed distance to an axis-aligned box with half-sizes (bu, bv)."""
    qu, qv = np.abs(u) - bu, np.abs(v) - bv
    outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
    return outside + np.minimum(np.maximum(qu, qv), 0.0)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance to an equilateral triangle of side 2 centred at its centroid (Inigo Quilez's formula)."""
    k = np.sqrt(3.0)
    pu, pv = np.abs(u) - 1.0, -v + 1.0 / k  # -v: apex up in image coordinates (rows grow downward)
    flip = pu + k * pv > 0.0
    pu, pv = np.where(flip, (pu - k * pv) / 2.0, pu), np.where(flip, (-k * pu - pv) / 2.0, pv)
    pu = pu - np.clip(pu, -2.0, 0.0)
    return -np.hypot(pu, pv) * np.sign(pv)


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) in the shape's local frame, where the shape has radius ~1."""
    r = np.hypot(u, v)
    if shape in ("disk", "striped_disk"):
        return r - 1.0
    if shape in ("square", "checker_square"):
        return _box(u, v, 0.85, 0.85)
    if shape == "triangle":
        return _triangle(u, v)
    if shape == "ring":
        return np.abs(r - 0.72) - 0.28
    if shape == "plus":
        return np.minimum(_box(u, v, 1.0, 0.3), _box(u, v, 0.3, 1.0))
    if shape == "bar":
        return _box(u, v, 1.05, 0.3)
    if shape == "two_disks":
        return np.minimum(np.hypot(u - 0.55, v) - 0.45, np.hypot(u + 0.55, v) - 0.45)
    if shape == "half_disk":
        return np.maximum(r - 1.0, v - 0.3)  # shifted cut keeps the centroid near the sampled centre
    raise ValueError(f"unknown shape {shape!r}")


def render_shape(label: int, rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Render one image of class `label` with parameters drawn from `rng`; returns uint8 [H, W, 3]."""
    shape, _, base_hue = CLASSES[label]
    # One draw for all scalar parameters keeps the stream layout fixed no matter which branch a class takes.
    p = rng.random(20)
    noise = rng.standard_normal((image_size, image_size, 3))  # [H, W, 3]

    coords = (np.arange(image_size) + 0.5) / image_size * 2.0 - 1.0  # pixel centres in [-1, 1]
    x, y = coords[None, :], coords[:, None]  # [1, W], [H, 1]: broadcast to [H, W]

    # Background: two dull colours blended along a random direction.
    c1 = _hsv_to_rgb(p[0], 0.4 * p[1], 0.12 + 0.45 * p[2])
    c2 = _hsv_to_rgb(p[3], 0.4 * p[4], 0.12 + 0.45 * p[5])
    phi = 2 * np.pi * p[6]
    t = np.clip(0.5 + 0.5 * (x * np.cos(phi) + y * np.sin(phi)), 0.0, 1.0)[..., None]  # [H, W, 1]
    img = c1 * (1.0 - t) + c2 * t  # [H, W, 3]

    # Shape: random centre/scale/rotation; brighter and more saturated than any background so class is visible.
    scale = 0.35 + 0.25 * p[7]
    max_offset = max(0.0, 0.9 - 1.15 * scale)
    cx, cy = max_offset * (2 * p[8] - 1), max_offset * (2 * p[9] - 1)
    theta = 2 * np.pi * p[10]
    dx, dy = x - cx, y - cy
    u = (np.cos(theta) * dx + np.sin(theta) * dy) / scale  # [H, W] local frame, shape radius ~1
    v = (-np.sin(theta) * dx + np.cos(theta) * dy) / scale
    sdf_pixels = _shape_sdf(shape, u, v) * scale * image_size / 2.0  # distance in pixels
    coverage = np.clip(0.5 - sdf_pixels, 0.0, 1.0)[..., None]  # [H, W, 1] one-pixel anti-aliased edge

    fg = _hsv_to_rgb((base_hue + 0.05 * (p[11] - 0.5)) % 1.0, 0.65 + 0.35 * p[12], 0.68 + 0.32 * p[13])
    shade = np.ones_like(u)
    if shape == "striped_disk":  # soft stripes across the disk, in the shape frame so they rotate with it
        shade = 0.6 + 0.4 * (0.5 + 0.5 * np.tanh(3.0 * np.sin(np.pi * (2.5 * v + p[14]))))
    elif shape == "checker_square":
        shade = 0.6 + 0.4 * (0.5 + 0.5 * np.tanh(3.0 * np.sin(np.pi * 1.5 * u) * np.sin(np.pi * 1.5 * v)))
    img = img * (1.0 - coverage) + (fg * shade[..., None]) * coverage

    # Sinusoidal texture over the whole image, then sensor-like pixel noise.
    psi, freq = 2 * np.pi * p[15], 1.0 + 3.0 * p[16]
    wave = np.sin(np.pi * freq * (x * np.cos(psi) + y * np.sin(psi)) + 2 * np.pi * p[18])  # [H, W]
    texture = 1.0 + (0.04 + 0.08 * p[17]) * wave
    img = img * texture[..., None] + PIXEL_NOISE_STD * noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


class ProceduralShapes(Dataset):
    """Deterministic procedural class-conditional images: `ds[i] -> (image [3, H, W] float32 in [-1, 1], label)`."""

    def __init__(self, num_images: int, image_size: int = 32, seed: int = 0, num_classes: int = 10):
        if not 1 <= num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in [1, {len(CLASSES)}], got {num_classes}")
        if num_images < 1 or image_size < 4 or seed < 0:
            raise ValueError(f"need num_images >= 1, image_size >= 4, seed >= 0; "
                             f"got {num_images}, {image_size}, {seed}")
        self.num_images, self.image_size, self.seed, self.num_classes = num_images, image_size, seed, num_classes
        # The numeric prefix makes sorted folder names follow label order, so an ImageFolder written by
        # save_as_image_folder assigns the same label ids as this dataset.
        self.class_names = [f"{i:02d}_{shape}_{colour}" for i, (shape, colour, _) in enumerate(CLASSES[:num_classes])]

    def __len__(self) -> int:
        return self.num_images

    def label(self, index: int) -> int:
        return index % self.num_classes

    @property
    def labels(self) -> list[int]:
        return [self.label(i) for i in range(self.num_images)]

    def render(self, index: int) -> np.ndarray:
        """uint8 [H, W, 3] image `index`; depends only on (seed, index, image_size)."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, index]))
        return render_shape(self.label(index), rng, self.image_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        if index < 0:
            index += self.num_images
        return uint8_to_tensor(self.render(index)), self.label(index)


def save_as_image_folder(dataset: ProceduralShapes, root: str | os.PathLike) -> str:
    """Write `root/<class_name>/<index:06d>.png` for every image; returns `root`. PNG is lossless, so reading it back
    with `ImageFolderDataset(root, dataset.image_size)` gives exactly `dataset[i]`, with the same label ids."""
    root = os.fspath(root)
    for name in dataset.class_names:
        os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(len(dataset)):
        path = os.path.join(root, dataset.class_names[dataset.label(i)], f"{i:06d}.png")
        Image.fromarray(dataset.render(i)).save(path, compress_level=1)  # level 1: ~3x faster, files still small
    return root


def main(argv: Sequence[str] | None = None) -> str:
    """CLI: write the procedural dataset as an ImageFolder (`python -m vapi.data.procedural OUT_DIR`)."""
    parser = argparse.ArgumentParser(prog="python -m vapi.data.procedural", description=main.__doc__)
    parser.add_argument("root", help="output folder; gets one subfolder per class")
    parser.add_argument("--num-images", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=len(CLASSES))
    args = parser.parse_args(argv)
    dataset = ProceduralShapes(args.num_images, args.image_size, args.seed, args.num_classes)
    root = save_as_image_folder(dataset, args.root)
    print(f"wrote {len(dataset)} images ({dataset.num_classes} classes, {args.image_size}px) to {root}")
    return root


if __name__ == "__main__":
    main()
