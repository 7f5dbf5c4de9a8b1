"""`vapi sample`: class-conditional images from a LlamaGen GPT + VQ tokenizer, as a PNG grid or, at scale, as a
resumable PNG folder + ADM `.npz` for FID.

Presets come from the weights' shapes, the image size from --image-size or the GPT file name (else 256).
Defaults are LlamaGen's `sample_c2i.py` values: CFG 4.0, top-k 2000, top-p 1.0, temperature 1.0, seed 0.

    vapi sample --gpt c2i_B_256.pt --vq vq_ds16_c2i.pt --classes 207,360,387,974 --cfg 4 --out grid.png

Mass mode (`--num-samples`): images i = 0..N-1 with labels uniform over the classes (or --labels balanced), each
from its own seed (seed, i), written as OUT_DIR/samples/{i:06d}.png in shards of --shard-size; finished shards are
skipped on rerun, and OUT_DIR/samples.npz (arr_0 uint8 NHWC, arr_1 labels) is written once all are done. Under
torchrun (RANK / WORLD_SIZE / LOCAL_RANK set) each rank does every WORLD_SIZE-th shard and rank 0 writes the npz.

    vapi sample --gpt c2i_XXL_384.pt --vq vq_ds16_c2i.pt --num-samples 50000 --out-dir samples/xxl \\
        --cfg 1.75 --top-k 0 --resize 256 --precision bf16
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vapi.commands import HelpFormatter, UserError, add_flag_aliases, config_from_args
from vapi.commands.model_args import add_model_options, gpt_overrides, positive_int
from vapi.commands.sample_text import add_text_options, is_text_mode, run_text
from vapi.config import get_dtype, helpf
from vapi.eval.sample_many import LABEL_MODES, sample_many, wait_for_shards, write_samples_npz
from vapi.imageio import save_grid
from vapi.models.build import MODEL_KINDS
from vapi.models.llamagen_gpt import GPT_PRESETS
from vapi.models.llamagen_vq import VQ_PRESETS
from vapi.models.protocols import PolicyBundle
from vapi.models.weights_io import build_generator_and_tokenizer
from vapi.sampling import CFG_SCHEDULES, SamplingConfig, sample_images
from vapi.training.distributed import resolve_device, torchrun_env


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def llamagen_sampling() -> SamplingConfig:
    """LlamaGen's `sample_c2i.py` values: CFG 4.0, top-k 2000 (the library's SamplingConfig defaults are neutral)."""
    return SamplingConfig(cfg_scale=4.0, top_k=2000)


@dataclass
class SampleConfig:
    """Every option of `vapi sample`; the command's flags are aliases of these (`--top-k` → sampling.top_k)."""

    gpt: str = helpf("", "GPT: official file, vapi model folder, training run folder (its latest checkpoint) or "
                         "step folder")
    vq: str | None = helpf(None, "VQ tokenizer checkpoint (official file or vapi folder); default for a run folder: "
                                 "the run's model.vq; not for model_kind=janus")
    gpt_model: str | None = helpf(None, "GPT size preset; default: read from the weights")
    image_size: int | None = helpf(None, "image size in pixels (not stored in LlamaGen weights); default: the number "
                                         "ending the file name (c2i_XXL_384.pt → 384), else 256")
    n_head: int | None = helpf(None, "attention heads of a custom-size GPT (the weights do not record it)")
    vq_model: str | None = helpf(None, "VQ tokenizer preset; default: read from the weights")
    ema: bool = helpf(False, "load the 'ema' weights of a training checkpoint")
    classes: str | None = helpf(None, "grid mode: class ids, e.g. 207,360 or 0-9")
    n_per_class: int = helpf(1, "grid mode: images per class")
    out: str | None = helpf(None, "grid mode: PNG grid to write (text mode: grid or GenEval folder)")
    nrow: int | None = helpf(None, "grid mode: images per grid row (default: one class per row, or all in one row)")
    num_samples: int | None = helpf(None, "mass mode: number of images N (e.g. 50000)")
    out_dir: str | None = helpf(None, "mass mode: folder for samples/, shards/ and samples.npz")
    labels: str = helpf("uniform", "mass mode: uniform-random class ids (as the ADM reference batch) or balanced "
                                   "(i % classes)")
    resize: int | None = helpf(None, "mass mode: bicubic resize to this size after decoding (e.g. 256 for 384-px "
                                     "models)")
    shard_size: int = helpf(500, "mass mode: images per resumable shard")
    npz: str | None = helpf(None, "mass mode: npz path (default: OUT_DIR/samples.npz)")
    precision: str = helpf("auto", "GPT weights dtype: auto | fp32 | bf16 | fp16; auto = bf16 on a GPU (as LlamaGen "
                                   "samples), fp32 on the CPU; the VQ decoder stays fp32")
    seed: int = helpf(0, "seed of the sampling noise")
    batch_size: int = helpf(32, "images per generate() call")
    device: str = helpf("auto", "cpu, cuda, cuda:1, ... (auto: cuda when available)")
    model_kind: str = helpf("llamagen", "text mode: llamagen (T2I checkpoint + vq + text_encoder) or janus (gpt = a "
                                        "transformers Janus folder or hub id in the HF cache)")
    prompt: list[str] | None = helpf(None, "text mode: text prompts (--prompt repeats)")
    prompts: str | None = helpf(None, "text mode: prompts file: .txt (one per line) → grid at out; GenEval .jsonl → "
                                      "GenEval folder at out")
    n_per_prompt: int | None = helpf(None, "text mode: images per prompt (grid 1, GenEval 4)")
    text_encoder: str = helpf("", "text mode, LlamaGen T2I: FLAN-T5 folder or hub id in the HF cache")
    text_cache_dir: str = helpf("", "text mode: T5 feature cache (default ~/.cache/vapi/text_features)")
    sampling: SamplingConfig = dataclasses.field(default_factory=llamagen_sampling)

    def __post_init__(self) -> None:
        for name in ("n_per_class", "shard_size", "batch_size", "nrow", "num_samples", "resize", "image_size",
                     "n_head", "n_per_prompt"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        for name, choices in (("labels", LABEL_MODES), ("precision", PRECISIONS), ("model_kind", MODEL_KINDS),
                              ("gpt_model", (None, *GPT_PRESETS)), ("vq_model", (None, *VQ_PRESETS))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {getattr(self, name)!r}")


ALIASES = {**{f.name: f.name for f in dataclasses.fields(SampleConfig) if f.name != "sampling"},
           "cfg": "sampling.cfg_scale", "cfg_schedule": "sampling.cfg_schedule", "cfg_power": "sampling.cfg_power",
           "temperature": "sampling.temperature", "top_k": "sampling.top_k", "top_p": "sampling.top_p"}


def option_help(name: str) -> str:
    """A flag's help is its option's (written once, in SampleConfig), less the mode its argument group names."""
    text = next(f.metadata["help"] for f in dataclasses.fields(SampleConfig) if f.name == name)
    return text.split(": ", 1)[1] if text.startswith(("grid mode: ", "mass mode: ")) else text


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    s = llamagen_sampling()
    p.add_argument("--cfg", type=float, default=s.cfg_scale, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--cfg-schedule", choices=CFG_SCHEDULES, default=s.cfg_schedule, help="guidance over the tokens")
    p.add_argument("--cfg-power", type=float, default=s.cfg_power, help="exponent of the power-cosine schedule")
    p.add_argument("--temperature", type=float, default=s.temperature, help="divides the logits before top-k / top-p")
    p.add_argument("--top-k", type=int, default=s.top_k, help="0 = off")
    p.add_argument("--top-p", type=float, default=s.top_p, help="1.0 = off")
    p.add_argument("--seed", type=int, default=0, help=option_help("seed"))
    p.add_argument("--batch-size", type=positive_int, default=32, help=option_help("batch_size"))
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sample", help="sample class-conditional images: a PNG grid, or N images + ADM npz",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--gpt", help=option_help("gpt") + " (required)")
    p.add_argument("--vq", help=option_help("vq"))
    add_model_options(p)
    grid = p.add_argument_group("grid mode")
    grid.add_argument("--classes", help=option_help("classes"))
    grid.add_argument("--n-per-class", type=positive_int, default=1)
    grid.add_argument("--out", help=option_help("out"))
    grid.add_argument("--nrow", type=positive_int, default=None, help=option_help("nrow"))
    mass = p.add_argument_group("mass mode (FID batches)")
    mass.add_argument("--num-samples", type=positive_int, help=option_help("num_samples"))
    mass.add_argument("--out-dir", help=option_help("out_dir"))
    mass.add_argument("--labels", choices=LABEL_MODES, default="uniform", help=option_help("labels").replace("%", "%%"))
    mass.add_argument("--resize", type=positive_int, default=None, help=option_help("resize"))
    mass.add_argument("--shard-size", type=positive_int, default=500, help=option_help("shard_size"))
    mass.add_argument("--npz", default=None, help=option_help("npz"))
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=option_help("precision"))
    add_sampling_options(p)
    add_text_options(p)
    add_flag_aliases(p, SampleConfig, ALIASES)
    p.set_defaults(func=run)
    return p


def load_generator(args: SampleConfig, device: torch.device) -> PolicyBundle:
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


def resolve_checkpoint_args(args: SampleConfig) -> None:
    """--gpt may be a run / step folder: use its model folder, and the run's tokenizer when --vq is not given."""
    from vapi.training.resolve import resolve_model_dir, run_dir_of

    given = args.gpt
    args.gpt = str(resolve_model_dir(given))
    if args.gpt != given:
        print(f"--gpt {given}: using {args.gpt}")
    run = run_dir_of(args.gpt)
    if run is not None and not getattr(args, "vq", None):
        import yaml

        vq = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("model", {}).get("vq")
        if vq:
            args.vq = vq
            print(f"--vq: {vq} (from {run / 'config.yaml'})")


def run(args: argparse.Namespace) -> int:
    args = config_from_args(args)  # SampleConfig: defaults < --config < the flags given < key=value
    if not args.gpt:
        raise UserError("--gpt is required: the GPT checkpoint, vapi model folder or training run folder")
    resolve_checkpoint_args(args)
    if args.precision == "auto":
        args.precision = "bf16" if resolve_device(args.device, option="--device").type == "cuda" else "fp32"
    if is_text_mode(args):
        return run_text(args, args.sampling)
    if not args.vq:
        raise UserError("--vq is required: the VQ tokenizer checkpoint the GPT was trained with")
    mass = args.num_samples is not None or args.out_dir is not None
    if mass and (args.num_samples is None or args.out_dir is None):
        raise UserError("mass mode needs both --num-samples and --out-dir")
    if mass and (args.classes or args.out):
        raise UserError("--classes/--out (grid) and --num-samples/--out-dir (mass sampling) are separate modes")
    if not mass and not (args.classes and args.out):
        raise UserError("give --classes and --out for a grid, or --num-samples and --out-dir for mass sampling")
    rank, world, local_rank = torchrun_env()
    if not mass and rank != 0:
        return 0  # a grid is a handful of images: under torchrun rank 0 alone draws and writes it
    device = resolve_device(args.device, local_rank if world > 1 else None, option="--device")  # a GPU per rank
    cfg = args.sampling
    bundle = load_generator(args, device)
    if bundle.policy.config.model_type != "c2i":
        raise UserError("this GPT is text-conditional (t2i): give --prompt/--prompts and --text-encoder")
    bundle.policy.to(get_dtype(args.precision))
    return run_mass(args, bundle, cfg, rank, world) if mass else run_grid(args, bundle, cfg, device)


def run_grid(args: SampleConfig, bundle: PolicyBundle, cfg: SamplingConfig, device) -> int:
    ids = parse_class_ids(args.classes, bundle.policy.config.num_classes)
    labels = torch.tensor(ids, device=device).repeat_interleave(args.n_per_class)  # [N], class-major
    generator = torch.Generator(device=device).manual_seed(args.seed)
    t0 = time.perf_counter()
    images = sample_images(bundle.policy, bundle.tokenizer, labels, cfg, batch_size=args.batch_size,
                           generator=generator)
    nrow = args.nrow or (args.n_per_class if args.n_per_class > 1 else len(ids))
    path = save_grid(images, args.out, nrow=nrow)
    print(f"wrote {path}: {images.shape[0]} images of {bundle.image_size} px in {time.perf_counter() - t0:.1f} s")
    return 0


def run_mass(args: SampleConfig, bundle: PolicyBundle, cfg: SamplingConfig, rank: int,
             world: int) -> int:
    # What else decides the pixels joins the manifest, so resuming against other weights is refused.
    settings = {"gpt": str(Path(args.gpt).resolve()), "vq": str(Path(args.vq).resolve()),
                "precision": args.precision, "ema": args.ema}
    res = sample_many(bundle, args.out_dir, args.num_samples, cfg, seed=args.seed, labels=args.labels,
                      shard_size=args.shard_size, batch_size=args.batch_size, resize=args.resize, rank=rank,
                      world_size=world, settings=settings, progress=rank == 0)
    rate = f", {res.images / res.seconds:.2f} img/s" if res.images else ""
    print(f"rank {rank}/{world}: generated {res.shards_done} shards ({res.images} images{rate}), "
          f"skipped {res.shards_skipped} finished shards")
    if rank != 0:
        return 0
    wait_for_shards(args.out_dir, args.num_samples)  # the other ranks' shards; immediate on one process
    path = write_samples_npz(args.out_dir, args.num_samples, args.npz)
    print(f"wrote {path}: {args.num_samples} images of {args.resize or bundle.image_size} px")
    return 0
