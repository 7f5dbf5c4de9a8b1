"""`vapi eval`: FID, IS, precision, recall (and sFID) of a sample batch against a reference batch.

    vapi eval samples/xxl/samples.npz --ref VIRTUAL_imagenet256_labeled.npz --json xxl_eval.json

SAMPLES is an ADM npz (`arr_0` uint8 NHWC, as `vapi sample --num-samples` writes) or an image folder. REF is an ADM
reference batch (its `mu`/`sigma`, `mu_s`/`sigma_s` are used as they are; its `arr_0` images give the precision/recall
manifold), any npz of images, or an image folder; computed reference statistics are cached in --cache-dir.

Features: `inception` (default) is torch-fidelity's port of the TF Inception graph the ADM evaluator runs, with
ADM's conventions (pool_3 FID, 5000-sample IS splits, k=3 precision/recall, mixed_6/conv sFID). Its weights are never
downloaded: they are read from $TORCH_HOME/hub/checkpoints/ or --inception-weights. A vapi classifier folder
(`vapi pretrain features`) instead gives the demo's feature network: numbers for relative comparisons only, plus
class accuracy against the npz labels. --random-inception runs an untrained Inception, for plumbing tests only.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from vapi.commands import HelpFormatter, UserError, add_flag_aliases, config_from_args
from vapi.commands.model_args import positive_int
from vapi.config import helpf
from vapi.training.distributed import resolve_device

RANDOM_INCEPTION_WARNING = ("warning: --random-inception: Inception has random weights; these numbers test the "
                            "pipeline only and are not FID / IS / precision / recall")


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vapi" / "eval"


@dataclass
class EvalConfig:
    """Every option of `vapi eval`; the command's positional SAMPLES and flags are aliases of these."""

    samples: str = helpf("", "sample batch: ADM .npz (arr_0 uint8 NHWC) or image folder")
    ref: str = helpf("", "reference: ADM .npz with mu/sigma, any image .npz, or image folder")
    features: str = helpf("inception", "'inception' (ADM-comparable) or a vapi classifier folder, or the run / step "
                                       "folder of its training (relative numbers only)")
    inception_weights: str | None = helpf(None, "torch-fidelity InceptionV3 weights file (default: "
                                                "$TORCH_HOME/hub/checkpoints/)")
    random_inception: bool = helpf(False, "TESTS ONLY: randomly initialised Inception, no weights file; the numbers "
                                          "mean nothing")
    batch_size: int = helpf(64, "images per feature-network forward")
    device: str = helpf("auto", "cpu, cuda, cuda:1, ... (auto: cuda when available)")
    cache_dir: str | None = helpf(None, "reference statistics cache (default: $XDG_CACHE_HOME/vapi/eval)")
    json: str | None = helpf(None, "results file (default: SAMPLES with suffix .eval.json)")

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")


def _help(name: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(EvalConfig) if f.name == name)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("eval", help="FID / IS / precision / recall of samples against a reference batch",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("samples", help=_help("samples"))
    p.add_argument("--ref", help=_help("ref") + " (required)")
    p.add_argument("--features", default="inception", help=_help("features"))
    p.add_argument("--inception-weights", default=None, help=_help("inception_weights"))
    p.add_argument("--random-inception", action="store_true", help=_help("random_inception"))
    p.add_argument("--batch-size", type=positive_int, default=64, help=_help("batch_size"))
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--cache-dir", default=None,
                   help=f"reference statistics cache (default: {default_cache_dir()})")
    p.add_argument("--json", default=None, help=_help("json"))
    add_flag_aliases(p, EvalConfig, {f.name: f.name for f in dataclasses.fields(EvalConfig)})
    p.set_defaults(func=run)
    return p


def build_extractor(args: EvalConfig, device):
    """(extractor, prefer the reference file's stored statistics, class-aligned labels)."""
    from vapi.eval.features import ClassifierExtractor, InceptionV3Extractor

    if args.features == "inception":
        if args.random_inception:
            print(RANDOM_INCEPTION_WARNING, file=sys.stderr)
        try:
            ext = InceptionV3Extractor(args.inception_weights, device=device, random_init=args.random_inception,
                                       spatial=True)
        except ImportError as e:
            raise UserError(str(e)) from None
        # ADM files hold TF-Inception statistics: right for the real port, meaningless next to random features.
        return ext, not args.random_inception, False
    if args.random_inception or args.inception_weights:
        raise UserError("--random-inception / --inception-weights apply to --features inception only")
    from vapi.models.weights_io import load_pretrained

    from vapi.training.resolve import resolve_model_dir

    folder = resolve_model_dir(args.features)
    if not folder.is_dir():
        raise UserError(f"--features must be 'inception' or a vapi classifier folder; {folder} is not a folder")
    model = load_pretrained(folder)
    if not callable(getattr(model, "features", None)):
        raise UserError(f"{folder} holds a {type(model).__name__}, not a classifier with features(x)")
    return ClassifierExtractor(model.to(device), device=device), False, True


def _image_size(path: Path) -> tuple[int, int] | None:
    """(H, W) of an npz's arr_0 from its header; None for folders or files without images."""
    from vapi.eval.npz import npz_shape

    try:
        return tuple(npz_shape(path)[1:3]) if path.is_file() else None
    except (ValueError, KeyError, OSError):
        return None


def run(args: argparse.Namespace) -> int:
    from vapi.eval.npz import check_images_npz
    from vapi.eval.report import evaluate_files, format_table, write_json

    args = config_from_args(args)  # EvalConfig: defaults < --config < the flags given < key=value
    if not args.ref:
        raise UserError("--ref is required: the reference batch (ADM .npz, image .npz or image folder)")

    if Path(args.samples).is_file():
        check_images_npz(args.samples)  # uint8 [N, H, W, 3] only: refused before any model loads
    sizes = _image_size(Path(args.samples)), _image_size(Path(args.ref))
    if None not in sizes and sizes[0] != sizes[1]:  # Inception resizes anyway, but FID then measures the resize too
        print(f"warning: samples are {sizes[0][0]}x{sizes[0][1]} px, reference images {sizes[1][0]}x{sizes[1][1]}; "
              f"the paper protocol resizes samples to the reference size (vapi sample --resize)", file=sys.stderr)
    device = resolve_device(args.device, option="--device")
    extractor, prefer_file_stats, use_labels = build_extractor(args, device)
    results = evaluate_files(args.samples, args.ref, extractor,
                             cache_dir=args.cache_dir or default_cache_dir(), batch_size=args.batch_size,
                             prefer_file_stats=prefer_file_stats, use_labels=use_labels, device=device)
    print(format_table(results))
    samples = Path(args.samples)
    out = Path(args.json) if args.json else samples.with_name(samples.stem + ".eval.json")
    meta = {"features": extractor.name, "samples": str(samples), "reference": str(args.ref)}
    print(f"wrote {write_json({**results, **meta}, out)}")
    return 0
