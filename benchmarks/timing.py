"""Shared helpers of the benchmarks (imported by the scripts beside it): timing and the benchmark models."""
from __future__ import annotations

import math
import time

import torch


def timed(fn, device: torch.device, repeats: int):
    """Best wall time of `repeats` calls (the least disturbed by other processes) and the last output."""
    best, out = math.inf, None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_setup(args):
    """The benchmarks' random LlamaGen GPT + VQ (sizes from args.dim/layers/heads/vocab/grid), procedural data at the
    matching resolution, and a RunConfig whose LPIPS backbone is random (timing only: weights do not matter)."""
    from vapi.data.procedural import ProceduralShapes
    from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT
    from vapi.models.llamagen_vq import VQConfig, VQModel
    from vapi.training.config import RunConfig

    torch.manual_seed(0)
    vq = VQModel(VQConfig(codebook_size=args.vocab, codebook_embed_dim=8, encoder_ch_mult=[1, 1, 2],
                          decoder_ch_mult=[1, 1, 2], z_channels=32, ch=32))
    policy = LlamaGenGPT(GPTConfig(dim=args.dim, n_layer=args.layers, n_head=args.heads, vocab_size=args.vocab,
                                   block_size=args.grid ** 2, num_classes=10))
    torch.nn.init.normal_(policy.output.weight, std=0.02)
    data = ProceduralShapes(64, image_size=args.grid * vq.downsample, seed=0)
    cfg = RunConfig()
    cfg.reward.lpips_net, cfg.reward.lpips_random_backbone = "alex", True
    return vq, policy, data, cfg
