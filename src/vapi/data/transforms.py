"""Image conversions shared by every dataset: any PIL mode → RGB, ADM's centre crop, uint8 ↔ [-1, 1] tensors, and
`RobustImageDataset`, the base that substitutes (and records) items whose files turn out to be damaged at load time.

Preprocessing is the VA-π/LlamaGen reference transform: convert to RGB, ADM's `center_crop_arr`, then
`ToTensor` + `Normalize(0.5, 0.5)` (reproduced bit-exactly by `uint8_to_tensor`). One departure: images with
transparency are composited onto white instead of `convert("RGB")`, which would expose whatever colour the encoder
left under transparent pixels (often black); opaque images are unaffected, so ImageNet matches the reference.
16-bit grayscale is rescaled to 8 bits instead of being clipped to white as Pillow's `convert` does.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections import Counter

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# What PIL's decoders raise on damaged input; anything else is a bug and must propagate.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError)


def center_crop_arr(pil_image: Image.Image, image_size: int) -> Image.Image:
    """ADM's center crop (guided-diffusion `image_datasets.py`, used by LlamaGen): halve with a BOX filter while the
    short side is >= 2 * image_size, BICUBIC-resize the short side to image_size, then crop the centre square."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return Image.fromarray(arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size])


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparency (RGBA, LA, PA, palette with a transparent index) is composited onto white;
    16-bit grayscale is scaled by 255/65535; everything else (L, 1, P, CMYK, YCbCr) uses Pillow's `convert`."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "I" or image.mode.startswith("I;16"):
        gray = np.rint(np.asarray(image, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    return image.convert("RGB")


def open_rgb(source) -> Image.Image:
    """A path or file object → the fully decoded RGB image. Decoding happens here, inside the caller's try, so damage
    a header check cannot see (a truncated JPEG) raises one of DECODE_ERRORS."""
    with Image.open(source) as image:
        image.load()
        return to_rgb(image)


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, H, W] in [-1, 1], bit-identical to ToTensor() + Normalize(0.5, 0.5)."""
    if not array.flags.writeable:  # np.asarray(PIL image) is read-only; torch warns on wrapping it
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div(255.0).sub(0.5).div(0.5)


def to_tensor(pil: Image.Image) -> torch.Tensor:
    """PIL image of any mode -> float32 [3, H, W] in [-1, 1] (see `to_rgb` for the mode rules)."""
    return uint8_to_tensor(np.asarray(to_rgb(pil)))


def summarise_skips(skipped: dict[str, str]) -> str:
    kinds = Counter(reason.split(":")[0] for reason in skipped.values())
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


class RobustImageDataset(Dataset):
    """Shared `__getitem__`: decode, and on a damaged item record it and substitute the next readable index.

    `skipped` is per process: under DataLoader workers each worker records in its own copy, and the warning is how
    those skips surface. Substitution keeps a long run alive at the cost of one duplicated sample per bad file.

    By default items are `samples[i] = (path, condition, ...)`, files on disk; other sources override `__len__`,
    `_name` and `_decode`."""

    image_size: int
    num_classes: int
    class_names: list[str]
    samples: list[tuple]
    warns_small_images_up_front = False  # an image folder counts them when it probes the headers

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}
        self._bad: set[int] = set()
        self.upscaled = 0  # items smaller than image_size seen so far (warned about once)

    def __len__(self) -> int:
        return len(self.samples)

    def _name(self, index: int) -> str:
        """A human-readable name of item `index` for skip reports."""
        return str(self.samples[index][0])

    def _decode(self, index: int):
        """(PIL image, condition) of item `index`; raises one of DECODE_ERRORS on an unreadable file."""
        path, condition = self.samples[index][:2]
        return open_rgb(path), condition

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self)
        for offset in range(n):
            j = (int(index) + offset) % n
            if j in self._bad:
                continue
            try:
                image, label = self._decode(j)
            except DECODE_ERRORS as err:
                self._bad.add(j)
                self.skipped[self._name(j)] = f"{type(err).__name__}: {err}"
                warnings.warn(f"{type(self).__name__}: skipping unreadable image {self._name(j)} ({err}); "
                              f"substituting the next readable index", stacklevel=2)
                continue
            if min(image.size) < self.image_size:
                self.upscaled += 1
                if self.upscaled == 1 and not self.warns_small_images_up_front:
                    warnings.warn(f"{type(self).__name__}: {self._name(j)} is {image.size[0]}x{image.size[1]}, "
                                  f"smaller than {self.image_size} px: upscaled (further ones are counted in "
                                  ".upscaled)", stacklevel=2)
            return to_tensor(center_crop_arr(image, self.image_size)), label
        raise ValueError(f"{type(self).__name__}: none of its {n} images could be decoded "
                         f"({summarise_skips(self.skipped)})")
