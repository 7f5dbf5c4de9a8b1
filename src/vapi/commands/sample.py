"""`vapi sample`: class-conditional images from a LlamaGen GPT + VQ tokenizer, saved as one PNG grid.

Presets come from the weights' shapes, the image size from --image-size or the GPT file name (else 256).
Defaults are LlamaGen's `sample_c2i.py` values: CFG 4.0, top-k 2000, top-p 1.0, temperature 1.0, seed 0.

    vapi sample --gpt c2i_B_256.pt --vq vq_ds16_c2i.pt --classes 207,360,387,974 --cfg 4 --out grid.png

The pieces (`load_generator`, `sampling_config`, `parse_class_ids`, `sample_images`) are reusable for a
mass-sampling mode (N samples per class into an ADM npz).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import torch

from vapi.cli import UserError
from vapi.commands.model_args import add_model_options, gpt_overrides, positive_int, resolve_device
from vapi.imageio import save_grid
from vapi.models.checkpoint import GeneratorAndTokenizer, build_generator_and_tokenizer
from vapi.sampling import CFG_SCHEDULES, SamplingConfig, generate


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", type=float, default=4.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--cfg-schedule", choices=CFG_SCHEDULES, default="constant", help="guidance over the tokens")
    p.add_argument("--cfg-power", type=float, default=1.0, help="exponent of the power-cosine schedule")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=2000, help="0 = off")
    p.add_argument("--top-p", type=float, default=1.0, help="1.0 = off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per generate() call")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help="sample class-conditional images into a PNG grid",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpt", required=True, help="GPT checkpoint (official file or vapi folder)")
    p.add_argument("--vq", required=True, help="VQ tokenizer checkpoint (official file or vapi folder)")
    add_model_options(p)
    p.add_argument("--classes", required=True, help="class ids, e.g. 207,360 or 0-9")
    p.add_argument("--n-per-class", type=positive_int, default=1)
    p.add_argument("--out", required=True, help="PNG grid to write")
    p.add_argument("--nrow", type=positive_int, default=None,
                   help="images per grid row (default: one class per row, or all in one row)")
    add_sampling_options(p)
    p.set_defaults(func=run)
    return p


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    try:
        return SamplingConfig(cfg_scale=args.cfg, cfg_schedule=args.cfg_schedule, cfg_power=args.cfg_power,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    except ValueError as e:
        raise UserError(str(e)) from None


def load_generator(args: argparse.Namespace, device: torch.device) -> GeneratorAndTokenizer:
    return build_generator_and_tokenizer(args.gpt, args.vq, gpt_preset=args.gpt_model, vq_preset=args.vq_model,
                                         image_size=args.image_size, prefer_ema=args.ema, device=device,
                                         **gpt_overrides(args))


def parse_class_ids(text: str, num_classes: int) -> list[int]:
    """'207,360' / '0-3,9' → ids, each checked against the GPT's class count."""
    ids: list[int] = []
    for part in filter(None, (s.strip() for s in text.split(","))):
        try:
            lo, _, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
            ids.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
        except ValueError:
            raise UserError(f"--classes: {part!r} is not a class id or range (e.g. 207,360 or 0-9)") from None
    if not ids:
        raise UserError("--classes is empty")
    bad = [i for i in ids if not 0 <= i < num_classes]
    if bad:
        raise UserError(f"class id {bad[0]} is out of range: this GPT has {num_classes} classes "
                        f"(ids 0-{num_classes - 1})")
    return ids


@torch.no_grad()
def sample_images(bundle: GeneratorAndTokenizer, labels: torch.Tensor, cfg: SamplingConfig, *,
                  batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield decoded images [b, 3, H, W] in [-1, 1] for consecutive chunks of `labels` [N]."""
    grid = bundle.image_size // bundle.vq.downsample
    for start in range(0, labels.shape[0], batch_size):
        cond = labels[start: start + batch_size]  # [b]
        tokens = generate(bundle.gpt, cond, cfg, generator=generator)  # [b, grid²]
        yield bundle.vq.decode(tokens, grid=(grid, grid)).float()


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    cfg = sampling_config(args)
    bundle = load_generator(args, device)
    if bundle.gpt.config.model_type != "c2i":
        raise UserError("this GPT is text-conditional (t2i); `vapi sample` draws class-conditional (c2i) images")
    ids = parse_class_ids(args.classes, bundle.gpt.config.num_classes)
    labels = torch.tensor(ids, device=device).repeat_interleave(args.n_per_class)  # [N], class-major
    generator = torch.Generator(device=device).manual_seed(args.seed)
    t0 = time.perf_counter()
    images = torch.cat(list(sample_images(bundle, labels, cfg, batch_size=args.batch_size, generator=generator)))
    nrow = args.nrow or (args.n_per_class if args.n_per_class > 1 else len(ids))
    path = save_grid(images, args.out, nrow=nrow)
    print(f"wrote {path}: {images.shape[0]} images of {bundle.image_size} px in {time.perf_counter() - t0:.1f} s")
    return 0
