"""Class-conditional image datasets: `ds[i] -> (image [3, H, W] float32 in [-1, 1], label int)`.

Preprocessing is `vapi.data.transforms` (the reference transform: RGB, ADM's centre crop, ToTensor + Normalize).

Sources (chosen by `vapi.data.build.build_dataset`):
- `ImageFolderDataset`: `root/<class_name>/**/<image>.<jpg|jpeg|png|webp|bmp>`, label = rank of the sorted class
  folder name (torchvision's rule, so a *complete* ImageNet folder gives the standard ids), or the id a class map
  gives each folder name (`data.class_map`: needed for a subset of a generator's classes, e.g. 10 ImageNet synsets;
  `data.class_map=imagenet` is the built-in ImageNet-1k table, `imagenet_synsets.txt`: the 1000 WordNet ids sorted,
  line i = class i, which is LlamaGen's order and torchvision's ImageFolder order on the ILSVRC-2012 train folder).
  Hidden files/folders are ignored.
- `HFDiskDataset`: a `datasets.save_to_disk` folder (a Dataset or a DatasetDict split), image + label columns.

Unreadable files are never dropped silently. The image folder header-checks every file once at construction
(`Image.open` parses only the header: cheap, run on a thread pool) and records files with a foreign extension or an
unparseable header in `skipped` (path -> reason) with one summary warning. Damage that only a full decode finds
(e.g. a truncated JPEG) is caught in `__getitem__`: the item is recorded in `skipped`, warned about, and the next
readable index is returned instead; a full decode of every file up front would cost as much as an epoch.
"""

from __future__ import annotations

import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
from PIL import Image

from vapi.data.transforms import DECODE_ERRORS, IMG_EXTENSIONS, RobustImageDataset, open_rgb, summarise_skips, to_rgb

LAYOUT = "root/<class_name>/<image>.png"
IMAGENET = "imagenet"  # data.class_map=imagenet: the built-in table
IMAGENET_SYNSETS = "imagenet_synsets.txt"  # package data next to this file: 1000 WordNet ids, sorted, line i = id i


def _probe(path: str) -> tuple[str | None, tuple[int, int]]:
    """(None, size) if PIL can parse the header, else (the reason, (0, 0)). Reads only the first few KB."""
    try:
        with Image.open(path) as image:
            return None, image.size
    except DECODE_ERRORS as err:
        return f"{type(err).__name__}: {err}", (0, 0)


class ImageFolderDataset(RobustImageDataset):
    """`root/<class_name>/**/<image>` -> (image [3, image_size, image_size] in [-1, 1], label).

    Labels are the ranks of the sorted class folder names; a class folder with no readable image keeps its id (so
    ids never shift) and is warned about. `validate=False` skips the construction-time header check (for huge folders
    on slow storage); bad files are then only found, and substituted, at load time."""

    warns_small_images_up_front = True

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
                                 f"{' ...' if len(unmapped) > 5 else ''} of {self.root!r}: name the folders as the map "
                                 f"does (data.class_map={IMAGENET}: ImageNet-1k WordNet ids such as n01440764) or "
                                 "give a map that lists them")
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
            detail = f"; skipped {len(self.skipped)} files ({summarise_skips(self.skipped)})" if self.skipped else ""
            raise ValueError(f"no readable images in {self.root!r}: expected layout {LAYOUT} with extensions "
                             f"{', '.join(IMG_EXTENSIONS)}{detail}")
        if self.skipped:
            warnings.warn(f"ImageFolderDataset({self.root!r}): skipped {len(self.skipped)} files "
                          f"({summarise_skips(self.skipped)}); see .skipped for paths and reasons", stacklevel=2)
        seen = {label for _, label in self.samples}
        empty = sorted(name for name, label in zip(self.class_names, ids) if label not in seen)
        if empty:
            warnings.warn(f"ImageFolderDataset({self.root!r}): class folders without readable images keep their "
                          f"label ids: {empty}", stacklevel=2)

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.samples]



class HFDiskDataset(RobustImageDataset):
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
        return open_rgb(value), label


def imagenet_class_map() -> dict[str, int]:
    """ImageNet-1k WordNet id → LlamaGen class id (the built-in table: the 1000 ids sorted, n01440764 → 0)."""
    text = resources.files("vapi.data").joinpath(IMAGENET_SYNSETS).read_text(encoding="ascii")
    return _line_map(text, IMAGENET_SYNSETS)


def _line_map(text: str, source: str) -> dict[str, int]:
    """Line i's first word → i."""
    names = [line.split()[0] for line in text.splitlines() if line.strip()]
    mapping = {name: i for i, name in enumerate(names)}
    if len(mapping) != len(names):
        raise ValueError(f"data.class_map {source!r}: a class name appears on two lines")
    return mapping


def load_class_map(path: str | os.PathLike) -> dict[str, int]:
    """Folder name → class id: `imagenet` (the built-in ImageNet-1k table), a .json / .yaml mapping, or a .txt list
    whose line i (first word) is class i."""
    if os.fspath(path) == IMAGENET:
        return imagenet_class_map()
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data.class_map file {path!r} does not exist (or use data.class_map={IMAGENET}, the "
                                "built-in ImageNet-1k synset table)")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".txt"):
        return _line_map(text, path)
    import yaml  # also reads JSON

    mapping = yaml.safe_load(text)
    if not isinstance(mapping, dict) or not all(isinstance(v, int) and v >= 0 for v in mapping.values()):
        raise ValueError(f"data.class_map {path!r} must map folder names to non-negative integer class ids")
    return {str(k): v for k, v in mapping.items()}
