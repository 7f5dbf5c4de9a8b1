"""Autoregressive image-token sampling: logit filtering, classifier-free guidance, KV-cache generation.

Follows LlamaGen's `generate()`: the CFG batch is [cond; null] (cond first), guided logits are
`uncond + (cond - uncond) * scale` at the prefill and at every decode step, temperature divides the logits before
top-k / top-p filtering, greedy is the argmax. Departures: the guidance scale can follow a schedule over the token
index (constant as the reference, linear, power-cosine), sampling takes an explicit `torch.Generator`, and the
KV cache works with grouped-query attention and captions of any length.

Schedules, for token t of T and guidance scale s (all equal s at the last token):
  constant:      s
  linear:        1 + (s - 1) * t / (T - 1)
  power-cosine:  1 + (s - 1) * (1 - cos(pi * (t / (T - 1)) ** power)) / 2
`cfg_interval` = k > -1 (the reference's option) stops guidance after token k + 1.

Per-sample randomness: `generate(..., uniforms=u)` with u [B, T] in [0, 1) draws token t of row b by inverse CDF at
u[b, t] instead of `torch.multinomial`. The same categorical distribution, but each row's draws are its own, so an
image depends on its own noise only, not on the batch it was generated in (mass sampling derives u from the sample
index: resumable, shardable, batch-size independent up to floating-point reduction order).
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vapi.models.protocols import PromptCondition, cat_conditions, condition_size, index_condition

CFG_SCHEDULES = ("constant", "linear", "power-cosine")


@dataclass
class SamplingConfig:
    cfg_scale: float = 1.0  # classifier-free guidance scale; 1 disables the null batch
    cfg_schedule: str = "constant"  # constant | linear | power-cosine
    cfg_power: float = 1.0  # exponent of the power-cosine schedule
    cfg_interval: int = -1  # > -1: guidance only up to token cfg_interval + 1, as the reference
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    greedy: bool = False

    def __post_init__(self):
        if self.cfg_schedule not in CFG_SCHEDULES:
            raise ValueError(f"cfg_schedule must be one of {CFG_SCHEDULES}, got {self.cfg_schedule!r}")
        if not self.cfg_scale >= 0:
            raise ValueError(f"cfg scale must be >= 0 (1 = off), got {self.cfg_scale}")
        if not self.cfg_power > 0:
            raise ValueError(f"cfg_power must be > 0, got {self.cfg_power}")
        if not self.temperature > 0 and not self.greedy:
            raise ValueError(f"temperature must be > 0 (got {self.temperature}); use greedy=True for argmax")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Top-k then top-p (nucleus) filtering on the last dim; removed entries become -inf. Keeps >= 1 token."""
    if top_k > 0:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the token that crosses p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None,
                uniform: torch.Tensor | None = None) -> torch.Tensor:
    """logits [B, V] → token ids [B] (int64). `uniform` [B] in [0, 1): inverse-CDF draws instead of multinomial."""
    if cfg.greedy:
        return logits.argmax(dim=-1)
    if uniform is None:
        probs = F.softmax(filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    # float32 at least: a bf16 CDF over 16k tokens would be too coarse to invert
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    cdf = F.softmax(filter_logits(logits / cfg.temperature, cfg.top_k, cfg.top_p), dim=-1).cumsum(-1)  # [B, V]
    # Scaling u by the total keeps it below cdf[-1] despite rounding; the first index with cdf > u then always has
    # positive probability (a filtered token adds exactly 0 to the running sum).
    u = uniform.to(cdf.device, cdf.dtype).unsqueeze(-1) * cdf[:, -1:]  # [B, 1]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_max(cdf.shape[-1] - 1)


def cfg_scale_at(t: int, num_tokens: int, cfg: SamplingConfig) -> float:
    if cfg.cfg_interval > -1 and t > cfg.cfg_interval + 1:
        return 1.0
    frac = t / max(num_tokens - 1, 1)
    s = cfg.cfg_scale
    if cfg.cfg_schedule == "linear":
        return 1 + (s - 1) * frac
    if cfg.cfg_schedule == "power-cosine":
        return 1 + (s - 1) * (1 - math.cos(math.pi * frac**cfg.cfg_power)) / 2
    return s


def guide(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """[2B, V] with rows [cond; null] → guided [B, V]."""
    cond, uncond = logits.chunk(2, dim=0)
    return uncond + (cond - uncond) * scale


@torch.no_grad()
def generate(model, cond, cfg: SamplingConfig | None = None, *, num_tokens: int | None = None,
             cond_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
             uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """KV-cache generation. cond: [B] class ids, [B, L, C] caption features (with `cond_mask`) or a PromptCondition
    → tokens [B, T] (int64).

    `uniforms` [B, T] in [0, 1): per-row sampling noise (see the module docstring); `generator` is then unused.

    `model` is a `vapi.models.protocols.Generator` (`prefill`, `decode`, `clear_cache`, `null_condition`).
    The model is put in eval mode for the call and restored afterwards.
    """
    cfg = cfg or SamplingConfig()
    T = num_tokens or model.num_image_tokens
    use_cfg = cfg.cfg_scale != 1.0
    cond = PromptCondition(cond, cond_mask) if cond_mask is not None else cond
    B, device = condition_size(cond), _device(cond)
    if uniforms is not None and tuple(uniforms.shape) != (B, T):
        raise ValueError(f"uniforms must be [B, T] = [{B}, {T}], got {tuple(uniforms.shape)}")
    uniforms = uniforms.to(device) if uniforms is not None else None
    if use_cfg:
        cond = cat_conditions([cond, model.null_condition(cond)])  # [2B, ...]: cond first, as the reference
    was_training = model.training
    model.eval()
    try:
        tokens = torch.empty(B, T, dtype=torch.long, device=device)
        logits = model.prefill(cond, T)  # [B or 2B, V]
        for t in range(T):
            if t > 0:
                feed = tokens[:, t - 1]
                logits = model.decode(torch.cat([feed, feed]) if use_cfg else feed, t - 1)
            if use_cfg:
                scale = cfg_scale_at(t, T, cfg)
                logits = guide(logits, scale) if scale != 1.0 else logits[:B]
            tokens[:, t] = sample_next(logits, cfg, generator, None if uniforms is None else uniforms[:, t])
        return tokens
    finally:
        model.clear_cache()
        model.train(was_training)


@torch.no_grad()
def sample_images(policy, tokenizer, cond, cfg: SamplingConfig | None = None, *, batch_size: int | None = None,
                  generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None,
                  autocast=nullcontext, clamp: bool = True, return_tokens: bool = False):
    """Generate tokens for `cond` and decode them: images [B, 3, H, W] float32, clamped to [-1, 1] unless `clamp` is
    False (resizing before quantising sees the decoder's raw output, as LlamaGen's sampler does). With
    `return_tokens`: (images, tokens [B, T] int64), both on the policy's device.

    `batch_size` rows per generate() call (default: all); `uniforms` [B, T] as in `generate`. `autocast` wraps the
    generation only: the tokenizer decodes in its own dtype."""
    n = condition_size(cond)
    step = batch_size or n
    out, codes = [], []
    for start in range(0, n, step):
        part = index_condition(cond, slice(start, start + step))
        noise = None if uniforms is None else uniforms[start: start + step]  # [b, T]
        with autocast():
            tokens = generate(policy, part, cfg, generator=generator, uniforms=noise)  # [b, T]
        images = tokenizer.decode(tokens).float()  # [b, 3, H, W]
        out.append(images.clamp(-1, 1) if clamp else images)
        codes.append(tokens)
    return (torch.cat(out), torch.cat(codes)) if return_tokens else torch.cat(out)


@torch.no_grad()
def generate_uncached(model, cond, cfg: SamplingConfig | None = None, *,
                      num_tokens: int | None = None, cond_mask: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """The same generation by recomputing the whole prefix at each step (no KV cache): the benchmark's baseline
    and a cross-check of the cache. Runs a teacher-forced pass per token."""
    cfg = cfg or SamplingConfig()
    T = num_tokens or model.num_image_tokens
    use_cfg = cfg.cfg_scale != 1.0
    cond = PromptCondition(cond, cond_mask) if cond_mask is not None else cond
    B = condition_size(cond)
    full_cond = cat_conditions([cond, model.null_condition(cond)]) if use_cfg else cond
    was_training = model.training
    model.eval()
    try:
        tokens = torch.zeros(B, T, dtype=torch.long, device=_device(cond))
        for t in range(T):
            ctx = torch.cat([tokens, tokens]) if use_cfg else tokens
            logits = model.teacher_forced_logits(full_cond, ctx[:, : t + 1])[:, t]  # [B or 2B, V]
            if use_cfg:
                scale = cfg_scale_at(t, T, cfg)
                logits = guide(logits, scale) if scale != 1.0 else logits[:B]
            tokens[:, t] = sample_next(logits, cfg, generator)
        return tokens
    finally:
        model.train(was_training)


def _device(cond) -> torch.device:
    return cond.inputs.device if isinstance(cond, PromptCondition) else cond.device
