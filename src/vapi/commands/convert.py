"""`vapi convert SRC DST`: LlamaGen checkpoint ⇄ vapi model folder.

SRC is an official `.pt/.pth/.bin` / `.safetensors` file or a vapi (or fixture) folder; DST ending in `.pt`,
`.pth` or `.bin` is written as a LlamaGen checkpoint (`{"model": state_dict}`), anything else as a vapi folder
(safetensors, sharded above --max-shard-size). Weights keep their stored dtype; the write is atomic.

    vapi convert c2i_B_256.pt runs/gpt_b            # official → vapi folder
    vapi convert runs/gpt_b c2i_B_256_vapi.pt       # vapi folder → LlamaGen's own loader
    vapi convert runs/vapi c2i_B_256_vapi.pt        # a training run's latest checkpoint → LlamaGen
"""
from __future__ import annotations

import argparse
from pathlib import Path

from vapi.commands import HelpFormatter, UserError
from vapi.commands.model_args import add_model_options, gpt_overrides, parse_size
from vapi.models.weights_io import DEFAULT_MAX_SHARD_BYTES, export_llamagen, load_model, save_pretrained

LLAMAGEN_SUFFIXES = (".pt", ".pth", ".bin")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("convert", help="convert LlamaGen checkpoints to vapi folders and back",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("src", help="official checkpoint file, vapi model folder, training run folder (its latest "
                               "checkpoint) or step folder")
    p.add_argument("dst", help="vapi model folder, or a .pt/.pth/.bin file for LlamaGen")
    p.add_argument("--kind", choices=("gpt", "vq", "auto"), default="auto",
                   help="model kind (default: from the weights)")
    add_model_options(p)
    p.add_argument("--max-shard-size", type=parse_size, default=DEFAULT_MAX_SHARD_BYTES,
                   help="largest safetensors shard of a vapi folder, e.g. 2GB (default), 500MB")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from vapi.training.resolve import resolve_model_dir

    src, dst = resolve_model_dir(args.src), Path(args.dst)
    if str(src) != args.src:
        print(f"{args.src}: using {src}")
    if src.resolve() == dst.resolve():
        raise UserError("SRC and DST are the same path")
    model = load_model(src, args.kind, args.gpt_model or args.vq_model, args.image_size, prefer_ema=args.ema,
                       dtype=None, **gpt_overrides(args))
    if dst.suffix in LLAMAGEN_SUFFIXES:
        if dst.exists() and not args.overwrite:
            raise UserError(f"{dst} already exists (pass --overwrite to replace it)")
        export_llamagen(model, dst)
        layout = "LlamaGen checkpoint"
    else:
        if dst.exists() and not args.overwrite and (dst.is_file() or any(dst.iterdir())):
            raise UserError(f"{dst} already exists (pass --overwrite to replace it)")
        save_pretrained(model, dst, max_shard_bytes=args.max_shard_size, overwrite=args.overwrite)
        shards = len(list(dst.glob("model*.safetensors")))
        layout = f"vapi folder, {shards} safetensors file{'s' * (shards > 1)}"
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {dst} ({layout}): {type(model).__name__}, {n / 1e6:.2f} M parameters")
    return 0
