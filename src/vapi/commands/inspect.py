"""`vapi inspect CKPT`: what a checkpoint holds, read from its shapes (and checked by a strict load).

Prints kind, size preset, conditioning, vocabulary, image size and token grid, transformer shape and parameter
count for a GPT; downsample, codebook and widths for a VQ tokenizer. Works on official LlamaGen files and vapi
or fixture folders.

    vapi inspect c2i_XXL_384.pt
    vapi inspect vq_ds16_c2i.pt
"""
from __future__ import annotations

import argparse

from vapi.commands import HelpFormatter
import math
from pathlib import Path

from vapi.commands.model_args import add_model_options, gpt_overrides
from vapi.models.weights_io import load_model
from vapi.models.infer_config import (DEFAULT_IMAGE_SIZE, GPT_DOWNSAMPLE, gpt_preset_name, image_size_from_filename,
                                      vq_preset_name)
from vapi.models.llamagen_gpt import LlamaGenGPT


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("inspect", help="print what a GPT / VQ checkpoint holds",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("ckpt", help="official checkpoint file or vapi model folder")
    p.add_argument("--kind", choices=("gpt", "vq", "auto"), default="auto",
                   help="model kind (default: from the weights)")
    add_model_options(p)
    p.set_defaults(func=run)
    return p


def _image_size_source(args, path: Path) -> str:
    if path.is_dir():
        return "from config.json"
    if args.image_size:
        return "from --image-size"
    return "from the file name" if image_size_from_filename(path) else f"default {DEFAULT_IMAGE_SIZE}, not stored"


def describe(model, size_source: str = "") -> list[tuple[str, str]]:
    """(label, value) rows describing a loaded LlamaGenGPT or VQModel."""
    n_params = sum(p.numel() for p in model.parameters())
    cfg = model.config
    if isinstance(model, LlamaGenGPT):
        if cfg.model_type == "c2i":
            null = " + null class for CFG" if cfg.class_dropout_prob > 0 else ""
            cond = f"c2i, {cfg.num_classes} classes (ids 0-{cfg.num_classes - 1}{null})"
        else:
            cond = f"t2i, caption dim {cfg.caption_dim}, {cfg.cls_token_num} caption tokens"
        grid = math.isqrt(cfg.block_size)
        return [
            ("kind", "GPT (llamagen_gpt)"),
            ("preset", gpt_preset_name(cfg) or "custom"),
            ("conditioning", cond),
            ("vocabulary", f"{cfg.vocab_size} image tokens"),
            ("image", f"{grid * GPT_DOWNSAMPLE} px with a VQ-16 tokenizer: {grid}x{grid} = {cfg.block_size} tokens"
                      + (f" ({size_source})" if size_source else "")),
            ("transformer", f"{cfg.n_layer} layers, {cfg.n_head} heads, {cfg.kv_heads} kv heads, dim {cfg.dim}, "
                            f"head dim {cfg.head_dim}, ffn {cfg.ffn_hidden}"),
            ("parameters", f"{n_params / 1e6:.2f} M"),
        ]
    return [
        ("kind", "VQ tokenizer (llamagen_vq)"),
        ("preset", vq_preset_name(cfg) or "custom"),
        ("downsample", f"{cfg.downsample} (256 px → {256 // cfg.downsample}x{256 // cfg.downsample} tokens)"),
        ("codebook", f"{cfg.codebook_size} x {cfg.codebook_embed_dim}"
                     + (", l2-normalised" if cfg.codebook_l2_norm else "")),
        ("widths", f"ch {cfg.ch}, encoder ch_mult {cfg.encoder_ch_mult}, z {cfg.z_channels}, "
                   f"num_res_blocks {cfg.num_res_blocks}"),
        ("parameters", f"{n_params / 1e6:.2f} M"),
    ]


def run(args: argparse.Namespace) -> int:
    path = Path(args.ckpt)
    model = load_model(path, args.kind, args.gpt_model or args.vq_model, args.image_size, prefer_ema=args.ema,
                       dtype=None, **gpt_overrides(args))
    size_source = _image_size_source(args, path) if isinstance(model, LlamaGenGPT) else ""
    rows = [("checkpoint", str(path))] + describe(model, size_source)
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    return 0
