"""`build_dataset(DataConfig)`: the dataset a run's `data` section names, and the contract every dataset keeps.

Kinds: `imagefolder` and `hf` (vapi.data.images), `captions` and `webdataset` (vapi.data.captions), `procedural`
(vapi.data.procedural, the embedded demo data); `auto` looks for tar shards, a captions file, then save_to_disk's
JSON files, else an image folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


from vapi.config import helpf
from vapi.data.captions import CaptionFolderDataset, CaptionTarDataset, detect_caption_layout
from vapi.data.images import HFDiskDataset, ImageFolderDataset, load_class_map
from vapi.data.procedural import ProceduralShapes


@runtime_checkable
class ImageDataset(Protocol):
    """What training and evaluation read from a dataset: `ds[i] -> (image [3, H, W] in [-1, 1], condition)`.

    num_classes: size of the label space (0 for captioned data); class_names: one name per class id."""

    num_classes: int
    class_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int): ...


@runtime_checkable
class CaptionedDataset(ImageDataset, Protocol):
    """An ImageDataset whose condition is a caption: `ds[i] -> (image, caption str)`, all of them in `captions`."""

    @property
    def captions(self) -> list[str]: ...


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
    class_map: str = helpf("", "imagefolder: class folder name → generator class id: 'imagenet' (built in: "
                               "ImageNet-1k WordNet-id folders such as n01440764 → LlamaGen's class ids, any subset "
                               "of the 1000), a .json/.yaml mapping or a .txt with one name per line (line i = id i); "
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


def build_dataset(spec: DataConfig) -> ImageDataset:
    """Build the dataset `spec` names (an ImageDataset; a CaptionedDataset for captions and webdataset)."""
    kind = spec.kind
    if kind == "procedural":
        return ProceduralShapes(spec.procedural_num_images, spec.image_size, spec.procedural_seed,
                                spec.num_classes if spec.num_classes is not None else 10)
    if not spec.path:
        raise ValueError("data.path is empty: point it at an image folder or save_to_disk folder, "
                         "or set data.kind=procedural for the embedded demo dataset")
    path = os.path.expanduser(spec.path)
    if kind in ("auto", "captions", "webdataset"):
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
