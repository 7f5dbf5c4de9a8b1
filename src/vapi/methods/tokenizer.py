"""`tokenizer`: post-train the tokenizer's decoder on the generator's own tokens, generator frozen.

The paper's "post-train tokenizer" baseline (no reference code exists), defined here as: per real image x, the
frozen generator's teacher-forced distribution on the clean tokens x* = VQ-encode(x) is sampled once per position
(the same draw VA-π's rollout makes, without context noise), the sampled tokens are decoded, and the decoder and the
post-quantisation conv learn to map them back to x:

    loss = −R(decode(ŷ), x),   R = −(reward.mse·MSE + reward.lpips·LPIPS) (+ reward.discriminator·D(x̂), the PatchGAN
                                logit from the VQ training checkpoint)

The encoder and the codebook stay fixed, so the generator's tokens keep their meaning. The trained module is the
tokenizer: checkpoints hold a vapi VQ folder (`checkpoints/step-N/model`) that `vapi sample` / `vapi eval` take as
`--vq` with the unchanged generator. LlamaGen VQ only; single-process or DDP (FSDP shards transformer blocks).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from vapi.config import helpf
from vapi.methods.base import Grid, Method, MethodContext, Prepared, Rows, freeze
from vapi.models.protocols import Condition
from vapi.objectives.rollout import sample_from_logits


@dataclass
class TokenizerMethodConfig:
    temperature: float = helpf(1.0, "temperature of the teacher-forced distribution the tokens are sampled from")
    train_post_quant_conv: bool = helpf(True, "train the post-quantisation conv with the decoder")

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"tokenizer.temperature must be > 0, got {self.temperature}")


@dataclass
class TokenizerWork(Rows):
    images: torch.Tensor  # [B, 3, H, W] real
    tokens: torch.Tensor  # [B, T] sampled from the frozen generator's teacher-forced distribution
    cond: Condition


class TokenDecoder(nn.Module):
    """tokens → images through the tokenizer's own decode; the module DDP wraps (its parameters are the VQ's)."""

    def __init__(self, tokenizer):
        super().__init__()
        self.vq = tokenizer

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.vq.decode(tokens)


class TokenizerMethod(Method):
    def __init__(self, cfg: TokenizerMethodConfig, policy, tokenizer, reward, ctx: MethodContext):
        if not (hasattr(tokenizer, "decoder") and hasattr(tokenizer, "post_quant_conv")):
            raise ValueError(f"objective.name=tokenizer trains a LlamaGen VQ decoder; {type(tokenizer).__name__} has "
                             "no decoder/post_quant_conv")
        if not reward.items:
            raise ValueError("objective.name=tokenizer needs a reconstruction loss: set reward.mse and/or "
                             "reward.lpips > 0")
        self.cfg, self.policy, self.reward, self.ctx = cfg, freeze(policy), reward, ctx
        self.model = tokenizer.requires_grad_(False)
        tokenizer.decoder.requires_grad_(True)
        tokenizer.post_quant_conv.requires_grad_(cfg.train_post_quant_conv)
        self._forward = TokenDecoder(tokenizer)

    @property
    def forward_module(self) -> nn.Module:
        return self._forward

    @torch.no_grad()
    def prepare(self, images, cond, keep_images: int = 0) -> Prepared:
        self.model.eval()
        gt_tokens = self.model.encode(images)  # [B, T]
        with self.ctx.autocast():
            logits = self.policy.teacher_forced_logits(cond, gt_tokens).float()  # [B, T, V]
        tokens, _ = sample_from_logits(logits, 1, self.cfg.temperature, generator=self.ctx.generator)  # [B, T]
        agree = (tokens == gt_tokens).float().mean().item()
        grid = None
        if keep_images:
            n = min(keep_images, images.shape[0])
            decoded = self.model.decode(tokens[:n])  # [n, 3, H, W]
            grid = Grid(images[:n], decoded, -(decoded - images[:n]).pow(2).flatten(1).mean(1))  # scored by −MSE
        return Prepared(TokenizerWork(images, tokens, cond), {"token_agreement": agree}, grid=grid)

    def loss(self, work: TokenizerWork):
        self.model.train(True)
        pred = self.wrapped(work.tokens)  # [mb, 3, H, W], float32: the decoder is small next to the generator
        reward, terms = self.reward(pred, work.images, work.cond, work.tokens)  # [mb]
        loss = -reward.mean()
        stats = {"loss": loss.detach(), "reward": reward.detach().mean()}
        stats.update({f"rewards/{k}/mean": v.detach().mean() for k, v in terms.items()})
        return loss, stats
