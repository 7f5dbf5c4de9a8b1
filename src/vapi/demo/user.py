"""A user's own stages and data in `vapi demo` and `vapi ablate`, through the demo's config keys.

    tokenizer_path    a LlamaGen VQ folder, as `vapi convert` or `vapi pretrain tokenizer` write it
    prior_path        a class-conditional LlamaGen GPT folder on that tokenizer's codes (`vapi convert`,
                      `vapi pretrain prior`)
    evalnet_path      the measuring network, perceptual_path the reward's: `vapi pretrain features` folders
    data.root         training images, root/<class_name>/<image> (vapi.data.images.ImageFolderDataset), and
    data.test_root    a held-out set with the same class folders; both center-cropped / resized to data.image_size

Rules: a user stage is used as given: never built, written or cached, and its key (run reuse, the report) is a hash
of its files. A stage left empty is the demo's own, built from the data in use (user data gets its own tokenizer,
prior and networks). A prior needs the tokenizer it was trained on; user data needs both folders. The classes are
the data's: the prior and the measuring network must know as many. Every broken rule is one ValueError that names
the key to change.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch

from vapi.data.images import ImageFolderDataset
from vapi.errors import one_line
from vapi.eval.npz import content_hash
from vapi.models.infer_config import CLASSIFIER_KIND, GPT_KIND, VQ_KIND, CheckpointError
from vapi.models.state_dict_io import read_model_config

# stage → (the model kind its folder must hold, what to give instead)
STAGE_KINDS = {
    "tokenizer": (VQ_KIND, "a LlamaGen VQ folder (vapi convert, vapi pretrain tokenizer)"),
    "prior": (GPT_KIND, "a class-conditional LlamaGen GPT folder (vapi convert, vapi pretrain prior)"),
    "evalnet": (CLASSIFIER_KIND, "a features-network folder (vapi pretrain features)"),
    "perceptual": (CLASSIFIER_KIND, "a features-network folder (vapi pretrain features)"),
}


def user_paths(cfg) -> dict[str, Path]:
    """The stages the user gives (`<stage>_path` not empty): stage → folder."""
    return {name: Path(getattr(cfg, f"{name}_path")).expanduser()
            for name in STAGE_KINDS if getattr(cfg, f"{name}_path")}


def content_key(folder: Path) -> str:
    """A hash of every file under `folder`, by relative path and content: a changed weight file changes it."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder).as_posix()}\0{content_hash(path)}\n".encode())
    return h.hexdigest()[:12]


def read_stage(name: str, folder: Path):
    """The model config in the user's `<name>_path`, after checking that it is a model folder of the right kind."""
    kind, what = STAGE_KINDS[name]
    if not folder.is_dir():
        raise ValueError(f"{name}_path {str(folder)!r} is not a folder: give {what}")
    try:
        found, config = read_model_config(folder)
    except CheckpointError as e:
        raise ValueError(f"{name}_path: {one_line(e)}; give {what}") from None
    if found != kind:
        raise ValueError(f"{name}_path {str(folder)!r} holds a {found} model, not a {kind}: give {what}")
    return config


def check_stages(cfg, configs: dict, num_classes: int) -> None:
    """The user's stages (`configs`: stage → model config) agree with each other and with the data (`num_classes`
    classes at data.image_size), and the tokenizer and prior the demo builds are built at the data's size."""
    size = cfg.data.image_size
    vq, gpt, evalnet = configs.get("tokenizer"), configs.get("prior"), configs.get("evalnet")
    if vq is not None and size % vq.downsample:
        raise ValueError(f"data.image_size={size} is not a multiple of the downsample factor {vq.downsample} of "
                         f"tokenizer_path: set data.image_size to a multiple of {vq.downsample}")
    for name in ("tokenizer", "prior"):  # the stages the demo builds at their own image_size
        built = getattr(cfg, name).image_size
        if name not in configs and built != size:
            raise ValueError(f"{name}.image_size={built} but data.image_size={size}: the demo builds the {name} on "
                             f"the data's images; set {name}.image_size={size}")
    if gpt is not None:
        grid = math.isqrt(gpt.block_size)
        if gpt.model_type != "c2i":
            raise ValueError(f"prior_path holds a {gpt.model_type} GPT: the demo needs a class-conditional (c2i) one")
        if gpt.vocab_size != vq.codebook_size:
            raise ValueError(f"prior_path predicts {gpt.vocab_size} codes but tokenizer_path has {vq.codebook_size}: "
                             "give the tokenizer the prior was trained on")
        if grid * vq.downsample != size:
            raise ValueError(f"prior_path predicts {grid}x{grid} tokens, {grid * vq.downsample} px with tokenizer_path "
                             f"(downsample {vq.downsample}), but data.image_size={size}: set data.image_size="
                             f"{grid * vq.downsample}")
        if gpt.num_classes != num_classes:
            raise ValueError(f"prior_path knows {gpt.num_classes} classes but the data has {num_classes}: give data "
                             "with the prior's classes (data.root, data.test_root) or a prior trained on these")
    if evalnet is not None and evalnet.num_classes != num_classes:
        raise ValueError(f"evalnet_path classifies {evalnet.num_classes} classes but the data has {num_classes}: "
                         "give a features network trained on these classes, or leave evalnet_path empty to build one")


def class_folder(key: str, root: str, image_size: int) -> ImageFolderDataset:
    """The class folder `root` (config key `key`) at `image_size`; a bad folder is one ValueError naming the key."""
    try:
        return ImageFolderDataset(root, image_size)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{key}: {one_line(e)}") from None


def user_data(d) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """(training, held-out) class folders of `d` (a DemoData). Both come in a seeded order (`d.seed`) so that the
    first N, which the evaluator uses (held-out: validation; training: the tokenizer's floor), mix the classes."""
    train = class_folder("data.root", d.root, d.image_size)
    test = class_folder("data.test_root", d.test_root, d.image_size)
    if train.class_names != test.class_names:
        odd = sorted(set(train.class_names) ^ set(test.class_names))
        raise ValueError(f"data.test_root's class folders are not data.root's (in only one of them: "
                         f"{', '.join(odd[:5])}{' ...' if len(odd) > 5 else ''}): give both the same class folders")
    for i, folder in enumerate((test, train)):  # class folders list one class after another
        order = torch.randperm(len(folder.samples), generator=torch.Generator().manual_seed(d.seed + i)).tolist()
        folder.samples = [folder.samples[j] for j in order]
    return train, test
