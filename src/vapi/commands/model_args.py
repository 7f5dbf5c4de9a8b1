"""Command-line options shared by the commands that load LlamaGen checkpoints (convert, inspect, sample).

The weights fix almost the whole config; these options cover what they cannot (image size, head count of a custom
size) and let the user force a size preset, which then fails loudly when the shapes disagree.
"""
from __future__ import annotations

import argparse
import re

from vapi.models.llamagen_gpt import GPT_PRESETS
from vapi.models.llamagen_vq import VQ_PRESETS

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # decimal GB as HF's max_shard_size


def parse_size(text: str) -> int:
    """'2GB' → 2_000_000_000, '500MiB' → 524_288_000, '1024' → 1024 bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", str(text).lower())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}; use e.g. 2GB, 500MB, 512MiB or a byte count")
    size = int(float(m.group(1)) * _UNITS[m.group(2) or ""])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return size


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (0 = never), got {text!r}")
    return value


def add_model_options(p: argparse.ArgumentParser, *, gpt: bool = True, vq: bool = True) -> None:
    if gpt:
        p.add_argument("--gpt-model", choices=list(GPT_PRESETS), default=None,
                       help="GPT size preset; default: read from the weights")
        p.add_argument("--image-size", type=positive_int, default=None,
                       help="image size in pixels (not stored in LlamaGen weights); default: the number ending the "
                            "file name (c2i_XXL_384.pt → 384), else 256")
        p.add_argument("--n-head", type=positive_int, default=None,
                       help="attention heads of a custom-size GPT (the weights do not record it)")
    if vq:
        p.add_argument("--vq-model", choices=list(VQ_PRESETS), default=None,
                       help="VQ tokenizer preset; default: read from the weights")
    p.add_argument("--ema", action="store_true", help="load the 'ema' weights of a training checkpoint")


def gpt_overrides(args: argparse.Namespace) -> dict:
    """GPTConfig fields the user set on the command line."""
    return {"n_head": args.n_head} if getattr(args, "n_head", None) else {}
