"""Text-prompt mode of `vapi sample` (LlamaGen T2I and Janus-Pro): a PNG grid, or a GenEval folder.

    vapi sample --gpt t2i_XL_stage1_256.pt --vq vq_ds16_t2i.pt --text-encoder google/flan-t5-xl \\
        --prompt "a red bus" --prompt "two cats" --cfg 7.5 --top-k 1000 --out grid.png
    vapi sample --model-kind janus --gpt deepseek-community/Janus-Pro-1B --prompts evaluation_metadata.jsonl \\
        --cfg 5 --top-k 0 --out geneval/janus_pro_1b            # GenEval layout, 4 images per prompt

`--prompts` reads a `.txt` (one prompt per line) or a GenEval `.jsonl` (one object with "prompt" per line); the
latter writes `<out>/<index:05d>/{metadata.jsonl, samples/<k:04d>.png}` through `vapi.eval.geneval.export_geneval`
(resumable: finished prompts are skipped). The sampling options are shared with class sampling; their defaults are
LlamaGen C2I's, so pass the model's own: LlamaGen T2I samples with --cfg 7.5 --top-k 1000, Janus-Pro with --cfg 5
--top-k 0 (temperature 1 for both).
"""
from __future__ import annotations

import argparse
import time

import torch

from vapi.commands import UserError
from vapi.commands.model_args import gpt_overrides, positive_int
from vapi.config import get_dtype
from vapi.eval.geneval import export_geneval
from vapi.imageio import save_grid
from vapi.models.build import MODEL_KINDS, build_policy
from vapi.models.protocols import PolicyBundle, PromptCondition
from vapi.models.text_encoder import TextEncoderConfig
from vapi.sampling import SamplingConfig, sample_images
from vapi.training.distributed import resolve_device


def add_text_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("text mode (LlamaGen T2I, Janus-Pro): --prompt / --prompts, written to --out")
    g.add_argument("--model-kind", choices=MODEL_KINDS, default="llamagen",
                   help="llamagen (T2I checkpoint + --vq + --text-encoder) or janus (--gpt = a transformers Janus "
                        "folder or hub id in the HF cache)")
    g.add_argument("--prompt", action="append", default=None, help="a text prompt (repeat for several)")
    g.add_argument("--prompts", default=None,
                   help="prompts file: .txt (one per line) → grid at --out; GenEval .jsonl → GenEval folder at "
                        "--out")
    g.add_argument("--n-per-prompt", type=positive_int, default=None, help="images per prompt (grid 1, GenEval 4)")
    g.add_argument("--text-encoder", default="", help="LlamaGen T2I: FLAN-T5 folder or hub id in the HF cache")
    g.add_argument("--text-cache-dir", default="", help="T5 feature cache (default ~/.cache/vapi/text_features)")


def is_text_mode(args: argparse.Namespace) -> bool:
    return bool(args.prompt or args.prompts) or args.model_kind == "janus"


def read_prompt_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def make_generate_fn(bundle: PolicyBundle, cfg: SamplingConfig, *, batch_size: int, device, seed: int):
    """generate(prompts, n) → images [len(prompts) * n, 3, H, W] in [-1, 1], prompt-major (GenEval's contract)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    dtype = next(bundle.policy.parameters()).dtype

    @torch.no_grad()
    def generate_images(prompts: list[str], n: int) -> torch.Tensor:
        cond = bundle.prompt_encoder(prompts).to(device).repeat_interleave(n)  # B*n rows
        if cond.inputs.is_floating_point():
            cond = PromptCondition(cond.inputs.to(dtype), cond.mask)  # T5 features in the GPT's dtype
        return sample_images(bundle.policy, bundle.tokenizer, cond, cfg, batch_size=batch_size, generator=generator)

    return generate_images


def run_text(args: argparse.Namespace, cfg: SamplingConfig) -> int:
    if not args.out:
        raise UserError("text mode writes to --out: a .png grid, or a folder for GenEval .jsonl prompts")
    if not (args.prompt or args.prompts):
        raise UserError("text mode needs --prompt TEXT (repeatable) or --prompts FILE (.txt or GenEval .jsonl)")
    device = resolve_device(args.device, option="--device")
    text = TextEncoderConfig(path=args.text_encoder, cache_dir=args.text_cache_dir)
    bundle = build_policy(args.model_kind, args.gpt, args.vq or "", text=text, gpt_preset=args.gpt_model,
                          vq_preset=getattr(args, "vq_model", None), image_size=args.image_size,
                          prefer_ema=args.ema, device=device, **gpt_overrides(args))
    if bundle.prompt_encoder is None:
        raise UserError("this GPT is class-conditional (c2i): sample it with --classes")
    bundle.policy.to(get_dtype(args.precision))
    generate_images = make_generate_fn(bundle, cfg, batch_size=args.batch_size, device=device, seed=args.seed)
    t0 = time.perf_counter()
    if args.prompts and args.prompts.endswith(".jsonl"):
        n = args.n_per_prompt or 4
        done = export_geneval(args.prompts, args.out, generate_images, n_per_prompt=n,
                              prompts_per_call=max(1, args.batch_size // n))
        print(f"wrote {args.out}: GenEval layout, {done} prompts generated ({n} images each) in "
              f"{time.perf_counter() - t0:.1f} s")
        return 0
    prompts = list(args.prompt or []) + (read_prompt_lines(args.prompts) if args.prompts else [])
    n = args.n_per_prompt or 1
    images = torch.cat([generate_images(prompts[s:s + 8], n) for s in range(0, len(prompts), 8)])
    path = save_grid(images, args.out, nrow=n if n > 1 else len(prompts))
    print(f"wrote {path}: {images.shape[0]} images of {bundle.image_size} px in {time.perf_counter() - t0:.1f} s")
    return 0
