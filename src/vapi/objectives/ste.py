"""Straight-through (Gumbel-softmax) relaxation of sampled tokens, for STE post-training of the generator.

Reference: `LlamaGen/autoregressive/train/train_c2i_ste.py` in the VA-Pi repository. Teacher-forced logits on the
clean context are divided by a temperature, perturbed with Gumbel noise and turned into a hard one-hot in the forward
pass whose gradient is that of the soft sample (`hard − soft.detach() + soft`, exactly `F.gumbel_softmax(...,
hard=True)`); the one-hot picks codebook rows (`one_hot @ codebook`) that the tokenizer's post-quantisation conv and
frozen decoder turn into an image. The forward image is therefore exactly `tokenizer.decode(sampled tokens)`.

Departures from the reference:
- the codebook is the one the tokenizer decodes with: LlamaGen l2-normalises its codebook rows at use time, while the
  reference's STE path multiplies by the raw `embedding.weight`, so its STE images differ from what the tokenizer
  decodes for the same tokens. `raw_codebook=True` reproduces the reference.
- the Gumbel noise is drawn from an explicit `torch.Generator` (F.gumbel_softmax takes none), so runs resume exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_MIN_TAU = 1e-5


def gumbel_softmax_st(logits: torch.Tensor, tau: float = 1.0, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """Hard one-hot forward, soft Gumbel-softmax backward. logits: [N, T, V] → [N, T, V] (float32)."""
    logits = logits.float()
    u = torch.rand(logits.shape, generator=generator, device=logits.device)  # [N, T, V] in [0, 1)
    tiny = torch.finfo(u.dtype).tiny
    exponential = -torch.log(u.clamp_min(tiny))  # Exp(1) draws
    gumbels = -torch.log(exponential.clamp_min(tiny))  # [N, T, V] Gumbel(0, 1), as F.gumbel_softmax
    soft = F.softmax((logits + gumbels) / max(tau, _MIN_TAU), dim=-1)  # [N, T, V]
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)  # [N, T, V]
    return hard - soft.detach() + soft


def one_hot_latent(one_hot: torch.Tensor, codebook: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """one_hot [N, T, V] @ codebook [V, C] → quantised latent [N, C, h, w] (row-major codes, as the tokenizer)."""
    N = one_hot.shape[0]
    z = one_hot @ codebook.to(one_hot.dtype)  # [N, T, C]
    return z.view(N, grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()


def ste_codebook(tokenizer, raw: bool = False) -> torch.Tensor:
    """The codebook [V, C] the STE path multiplies by: as the tokenizer decodes (default) or the raw weights."""
    quantize = getattr(tokenizer, "quantize", None)
    if not hasattr(tokenizer, "decode_latent") or not hasattr(quantize, "embedding"):
        raise ValueError(f"objective.name=ste needs a tokenizer with a codebook (quantize.embedding) and "
                         f"decode_latent (LlamaGen's VQ); {type(tokenizer).__name__} has no such path")
    return quantize.embedding.weight if raw or not hasattr(quantize, "codebook") else quantize.codebook()


def relaxed_decode(tokenizer, logits: torch.Tensor, tau: float, temperature: float = 1.0, raw_codebook: bool = False,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [N, T, V] → (images [N, 3, H, W] differentiable w.r.t. the logits, sampled tokens [N, T]).

    `temperature` divides the logits before the Gumbel step (the reference's --temperature), `tau` is the
    Gumbel-softmax temperature (--ste-tau)."""
    T = logits.shape[1]
    side = int(round(T ** 0.5))
    one_hot = gumbel_softmax_st(logits.float() / max(temperature, _MIN_TAU), tau, generator)  # [N, T, V]
    latent = one_hot_latent(one_hot, ste_codebook(tokenizer, raw_codebook), (side, side))  # [N, C, h, w]
    return tokenizer.decode_latent(latent), one_hot.detach().argmax(-1)
