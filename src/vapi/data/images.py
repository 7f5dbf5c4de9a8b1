"""Class-conditional image datasets: `ds[i] -> (image [3, H, W] float32 in [-1, 1], label int)`.

Preprocessing is the VA-π/LlamaGen reference transform: convert to RGB, ADM's `center_crop_arr`, then
`ToTensor` + `Normalize(0.5, 0.5)` (reproduced bit-exactly by `uint8_to_tensor`). One departure: images with
transparency are composited onto white instead of `convert("RGB")`, which would expose whatever colour the encoder
left under transparent pixels (often black); opaque images are unaffected, so ImageNet matches the reference.
16-bit grayscale is rescaled to 8 bits instead of being clipped to white as Pillow's `convert` does.

Sources, chosen by `build_dataset(DataConfig)`:
- `ImageFolderDataset`: `root/<class_name>/**/<image>.<jpg|jpeg|png|webp|bmp>`, label = rank of the sorted class
  folder name (torchvision's rule, so a *complete* ImageNet folder gives the standard ids), or the id a class map
  gives each folder name (`data.class_map`: needed for a subset of a generator's classes, e.g. 10 ImageNet synsets).
  Hidden files/folders are ignored.
- `HFDiskDataset`: a `datasets.save_to_disk` folder (a Dataset or a DatasetDict split), image + label columns.
- `ProceduralShapes` (vapi.data.procedural): the embedded demo dataset.

Unreadable files are never dropped silently. The image folder header-checks every file once at construction
(`Image.open` parses only the header: cheap, run on a thread pool) and records files with a foreign extension or an
unparseable header in `skipped` (path -> reason) with one summary warning. Damage that only a full decode finds
(e.g. a truncated JPEG) is caught in `__getitem__`: the item is recorded in `skipped`, warned about, and the next
readable index is returned instead; a full decode of every file up front would cost as much as an epoch.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
import os
import struct
import warnings
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vapi.config import helpf

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
LAYOUT = "root/<class_name>/<image>.png"
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


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float32 [3, H, W] in [-1, 1], bit-identical to ToTensor() + Normalize(0.5, 0.5)."""
    if not array.flags.writeable:  # np.asarray(PIL image) is read-only; torch warns on wrapping it
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div(255.0).sub(0.5).div(0.5)


def to_tensor(pil: Image.Image) -> torch.Tensor:
    """PIL image of any mode -> float32 [3, H, W] in [-1, 1] (see `to_rgb` for the mode rules)."""
    return uint8_to_tensor(np.asarray(to_rgb(pil)))


def _summarise(skipped: dict[str, str]) -> str:
    kinds = Counter(reason.split(":")[0] for reason in skipped.values())
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


class _RobustImageDataset(Dataset, ABC):
    """Shared `__getitem__`: decode, and on a damaged item record it and substitute the next readable index.

    `skipped` is per process: under DataLoader workers each worker records in its own copy, and the warning is how
    those skips surface. Substitution keeps a long run alive at the cost of one duplicated sample per bad file."""

    image_size: int
    num_classes: int
    class_names: list[str]

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}
        self._bad: set[int] = set()
        self.upscaled = 0  # items smaller than image_size seen so far (warned about once)

    @abstractmethod
    def _decode(self, index: int) -> tuple[Image.Image, int]:
        """The PIL image and label of item `index` (may raise on an unreadable file)."""

    @abstractmethod
    def _name(self, index: int) -> str:
        """A human-readable name of item `index` for skip reports."""

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
                if self.upscaled == 1 and not isinstance(self, ImageFolderDataset):  # the folder warned up front
                    warnings.warn(f"{type(self).__name__}: {self._name(j)} is {image.size[0]}x{image.size[1]}, "
                                  f"smaller than {self.image_size} px: upscaled (further ones are counted in "
                                  ".upscaled)", stacklevel=2)
            return to_tensor(center_crop_arr(image, self.image_size)), label
        raise ValueError(f"{type(self).__name__}: none of its {n} images could be decoded "
                         f"({_summarise(self.skipped)})")


def _probe(path: str) -> tuple[str | None, tuple[int, int]]:
    """(None, size) if PIL can parse the header, else (the reason, (0, 0)). Reads only the first few KB."""
    try:
        with Image.open(path) as image:
            return None, image.size
    except DECODE_ERRORS as err:
        return f"{type(err).__name__}: {err}", (0, 0)


class ImageFolderDataset(_RobustImageDataset):
    """`root/<class_name>/**/<image>` -> (image [3, image_size, image_size] in [-1, 1], label).

    Labels are the ranks of the sorted class folder names; a class folder with no readable image keeps its id (so
    ids never shift) and is warned about. `validate=False` skips the construction-time header check (for huge folders
    on slow storage); bad files are then only found, and substituted, at load time."""

    def __init__(self, root: str | os.PathLike, image_size: int, validate: bool = True,
                 class_map: dict[str, int] | None = None):
        super().__init__()
        self.class_map = class_map
        self.root, self.image_size = os.path.expanduser(os.fspath(root)), image_size
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"image folder {self.root!r} does not exist (expected layout {LAYOUT})")
        entries = sorted((e for e in os.scandir(self.root) if not e.name.startswith(".")), key=lambda e: e.name)
        self.class_names = [e.name for e in entries if e.is_dir()]
        loose = [e.path for e in entries if not e.is_dir()]
        if not self.class_names:
            n_images = sum(p.lower().endswith(IMG_EXTENSIONS) for p in loose)
            what = f"{n_images} images but no class subfolders" if n_images else "no class subfolders"
            raise ValueError(f"image folder {self.root!r} has {what}; expected layout {LAYOUT} (for unlabelled "
                             f"images put them all in one subfolder, e.g. {self.root}/all/, which becomes label 0)")
        self.num_classes = len(self.class_names)
        ids = list(range(self.num_classes))
        if class_map is not None:
            unmapped = [n for n in self.class_names if n not in class_map]
            if unmapped:
                raise ValueError(f"data.class_map has no id for the class folder(s) {', '.join(unmapped[:5])}"
                                 f"{' ...' if len(unmapped) > 5 else ''} of {self.root!r}")
            ids = [class_map[n] for n in self.class_names]
            # labels are generator class ids: the label space is the map's, of which the folders hold a subset
            self.num_classes = max(class_map.values()) + 1
        for path in loose:
            self.skipped[path] = "outside a class folder: files must sit in root/<class_name>/"

        candidates: list[tuple[str, int]] = []
        seen_dirs: set[tuple[int, int]] = set()  # (device, inode): a symlink loop or a second link is walked once
        for label, name in zip(ids, self.class_names):
            for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, name), followlinks=True):
                st = os.stat(dirpath)
                if (st.st_dev, st.st_ino) in seen_dirs:
                    self.skipped[dirpath] = "folder already walked (a symlink loop or a second link to it)"
                    dirnames[:] = []
                    continue
                seen_dirs.add((st.st_dev, st.st_ino))
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for file in sorted(f for f in filenames if not f.startswith(".")):
                    path = os.path.join(dirpath, file)
                    if file.lower().endswith(IMG_EXTENSIONS):
                        candidates.append((path, label))
                    else:
                        self.skipped[path] = f"not an image extension: expected one of {', '.join(IMG_EXTENSIONS)}"
        if validate and candidates:
            with ThreadPoolExecutor(max_workers=min(16, 4 * (os.cpu_count() or 1))) as pool:
                probed = list(pool.map(_probe, (p for p, _ in candidates)))
            for (path, _), (reason, _) in zip(candidates, probed):
                if reason is not None:
                    self.skipped[path] = reason
            small = sum(1 for reason, size in probed if reason is None and min(size) < image_size)
            if small:
                warnings.warn(f"ImageFolderDataset({self.root!r}): {small} of {len(candidates)} images are smaller "
                              f"than {image_size} px on their short side and will be upscaled", stacklevel=2)
            candidates = [c for c, (reason, _) in zip(candidates, probed) if reason is None]
        self.samples = candidates

        if not self.samples:
            detail = f"; skipped {len(self.skipped)} files ({_summarise(self.skipped)})" if self.skipped else ""
            raise ValueError(f"no readable images in {self.root!r}: expected layout {LAYOUT} with extensions "
                             f"{', '.join(IMG_EXTENSIONS)}{detail}")
        if self.skipped:
            warnings.warn(f"ImageFolderDataset({self.root!r}): skipped {len(self.skipped)} files "
                          f"({_summarise(self.skipped)}); see .skipped for paths and reasons", stacklevel=2)
        seen = {label for _, label in self.samples}
        empty = sorted(name for name, label in zip(self.class_names, ids) if label not in seen)
        if empty:
            warnings.warn(f"ImageFolderDataset({self.root!r}): class folders without readable images keep their "
                          f"label ids: {empty}", stacklevel=2)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def _name(self, index: int) -> str:
        return self.samples[index][0]

    def _decode(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            image.load()  # force the full decode inside the try of __getitem__, where damage is caught
            return to_rgb(image), label


class HFDiskDataset(_RobustImageDataset):
    """A `datasets.save_to_disk` folder -> (image [3, image_size, image_size] in [-1, 1], label).

    A DatasetDict folder uses `split`. Images are decoded here rather than by `datasets` so damaged rows are
    substituted and recorded like damaged files. `label_column=None` gives an unconditional dataset (label 0).
    `num_classes` comes from a ClassLabel feature, else max(label) + 1."""

    def __init__(self, path: str | os.PathLike, image_size: int, image_column: str = "image",
                 label_column: str | None = "label", split: str = "train"):
        super().__init__()
        try:
            import datasets
        except ImportError as err:
            raise ImportError("HFDiskDataset needs the `datasets` package: pip install vapi[hf]") from err
        self.path, self.image_size = os.path.expanduser(os.fspath(path)), image_size
        ds = datasets.load_from_disk(self.path)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{self.path!r} is a DatasetDict with splits {list(ds)}; no split {split!r}")
            ds = ds[split]
        for column in (image_column, label_column):
            if column is not None and column not in ds.column_names:
                raise ValueError(f"{self.path!r} has no column {column!r}; columns: {ds.column_names}")
        if len(ds) == 0:
            raise ValueError(f"HF dataset {self.path!r} (split {split!r}) has no rows")
        if isinstance(ds.features[image_column], datasets.Image):
            ds = ds.cast_column(image_column, datasets.Image(decode=False))  # {"bytes", "path"}: we decode

        label_feature = ds.features.get(label_column) if label_column is not None else None
        if label_column is None:
            self.class_names = ["unconditional"]
        elif isinstance(label_feature, datasets.ClassLabel):
            self.class_names = list(label_feature.names)
        else:
            labels = np.asarray(ds.with_format("numpy")[label_column])
            if labels.dtype.kind not in "iu" or labels.min() < 0:
                raise ValueError(f"label column {label_column!r} of {self.path!r} must hold non-negative ints")
            self.class_names = [str(i) for i in range(int(labels.max()) + 1)]
        self.num_classes = len(self.class_names)
        self.image_column, self.label_column = image_column, label_column
        self.dataset = ds.select_columns([c for c in (image_column, label_column) if c is not None])

    def __len__(self) -> int:
        return len(self.dataset)

    def _name(self, index: int) -> str:
        return f"{self.path}[{index}]"

    def _decode(self, index: int) -> tuple[Image.Image, int]:
        row = self.dataset[index]
        value = row[self.image_column]
        label = int(row[self.label_column]) if self.label_column is not None else 0
        if isinstance(value, Image.Image):
            value.load()
            return to_rgb(value), label
        if isinstance(value, dict):  # datasets.Image(decode=False)
            value = value["bytes"] if value.get("bytes") is not None else value.get("path")
        if isinstance(value, (bytes, bytearray)):
            value = io.BytesIO(value)
        if value is None:
            raise ValueError("row has no image bytes or path")
        with Image.open(value) as image:
            image.load()
            return to_rgb(image), label


DATA_KINDS = ("auto", "imagefolder", "hf", "procedural", "captions", "webdataset")
HF_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")  # what save_to_disk writes


@dataclass
class DataConfig:
    path: str = helpf("", "image folder, save_to_disk folder, caption folder or tar shards (folder, glob, "
                          "{000..073}, comma list); unused by kind=procedural")
    kind: str = helpf("auto", "auto | imagefolder | hf | procedural | captions (images + .jsonl/.csv) | webdataset "
                              "(tar shards of jpg + txt/json); auto looks for .tar files, a captions file, "
                              "save_to_disk's JSON files")
    captions_file: str = helpf("", "captions: the .jsonl/.csv (default: the one in data.path)")
    caption_column: str = helpf("", "captions: caption column (default: caption | text | prompt)")
    image_size: int = helpf(256, "output side after the ADM center crop (procedural: render size)")
    num_classes: int | None = helpf(None, "None: discovered from the data; set: checked against it")
    class_map: str = helpf("", "imagefolder: class folder name → generator class id, a .json/.yaml mapping or a .txt "
                               "with one name per line (line i = id i, e.g. ImageNet's LOC_synset_mapping.txt); "
                               "empty = sorted folder rank")
    validate: bool = helpf(True, "imagefolder: header-check every file at construction")
    image_column: str = helpf("image", "hf: image column")
    label_column: str | None = helpf("label", "hf: label column; None = unconditional")
    split: str = helpf("train", "hf: split, when the folder holds a DatasetDict")
    procedural_num_images: int = helpf(10_000, "procedural: number of images")
    procedural_seed: int = helpf(0, "procedural: seed of the rendering")

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"data.kind must be one of {DATA_KINDS}, got {self.kind!r}")
        if self.image_size < 1:
            raise ValueError(f"data.image_size must be positive, got {self.image_size}")


def load_class_map(path: str | os.PathLike) -> dict[str, int]:
    """Folder name → class id from a .json / .yaml mapping, or a .txt list whose line i (first word) is class i."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data.class_map file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".txt"):
        names = [line.split()[0] for line in text.splitlines() if line.strip()]
        mapping = {name: i for i, name in enumerate(names)}
        if len(mapping) != len(names):
            raise ValueError(f"data.class_map {path!r}: a class name appears on two lines")
        return mapping
    import yaml  # also reads JSON

    mapping = yaml.safe_load(text)
    if not isinstance(mapping, dict) or not all(isinstance(v, int) and v >= 0 for v in mapping.values()):
        raise ValueError(f"data.class_map {path!r} must map folder names to non-negative integer class ids")
    return {str(k): v for k, v in mapping.items()}


def build_dataset(spec: DataConfig) -> Dataset:
    """Build the dataset `spec` names; the result exposes `num_classes` and `class_names`."""
    kind = spec.kind
    if kind == "procedural":
        from vapi.data.procedural import ProceduralShapes  # lazy: procedural imports this module

        return ProceduralShapes(spec.procedural_num_images, spec.image_size, spec.procedural_seed,
                                spec.num_classes if spec.num_classes is not None else 10)
    if not spec.path:
        raise ValueError("data.path is empty: point it at an image folder or save_to_disk folder, "
                         "or set data.kind=procedural for the embedded demo dataset")
    path = os.path.expanduser(spec.path)
    if kind in ("auto", "captions", "webdataset"):
        from vapi.data.captions import CaptionFolderDataset, CaptionTarDataset, detect_caption_layout

        kind = (detect_caption_layout(path) if kind == "auto" else None) or kind
        if kind == "webdataset":
            return CaptionTarDataset(path, spec.image_size)
        if kind == "captions":
            return CaptionFolderDataset(path, spec.image_size, spec.captions_file, spec.caption_column)
    if kind == "auto":
        kind = "hf" if any(os.path.isfile(os.path.join(path, m)) for m in HF_MARKERS) else "imagefolder"
    if kind == "hf":
        ds = HFDiskDataset(path, spec.image_size, spec.image_column, spec.label_column, spec.split)
    else:
        class_map = load_class_map(spec.class_map) if spec.class_map else None
        ds = ImageFolderDataset(path, spec.image_size, validate=spec.validate, class_map=class_map)
    if spec.class_map and not isinstance(ds, ImageFolderDataset):
        raise ValueError("data.class_map applies to image folders (class subfolders) only")
    if spec.num_classes is not None and spec.num_classes != ds.num_classes:
        # Folder-derived ids are ranks, so a missing class folder shifts every later id: only an exact match is safe.
        # Explicit HF label ids may be a subset of a larger label space.
        if isinstance(ds, ImageFolderDataset) or spec.num_classes < ds.num_classes:
            raise ValueError(f"data.num_classes={spec.num_classes} but {path!r} has {ds.num_classes} classes")
        ds.num_classes = spec.num_classes
        ds.class_names += [str(i) for i in range(len(ds.class_names), spec.num_classes)]
    return ds
