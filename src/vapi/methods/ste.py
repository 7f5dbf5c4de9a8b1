"""`ste`: straight-through post-training of the generator through the frozen decoder.

Reference: `LlamaGen/autoregressive/train/train_c2i_ste.py` (VA-Pi repository). Per real image x with clean tokens
x* = VQ-encode(x): teacher-forced logits on x* (train mode, so class dropout applies as in the reference), a
Gumbel-softmax sample with a hard one-hot forward and soft backward (`ste.tau`), one-hot @ codebook → the tokenizer's
post-quantisation conv → frozen decoder → x̂, and

    loss = −R(x̂, x) + aux_ce_weight · CE(logits, x*),   R = −(reward.mse·MSE + reward.l1·L1 + reward.lpips·LPIPS ...)

i.e. the reference's rec·MSE (or L1) + perc·LPIPS + aux·CE with rec = reward.mse (or reward.l1), perc =
reward.lpips. Gradients flow through the frozen decoder into the generator only. The codebook is the one the tokenizer
decodes with (l2-normalised for LlamaGen); `ste.raw_codebook=true` multiplies by the raw weights as the reference
does (see `objectives.ste`). One sequence per image, one decoder forward and backward per image: the costly part.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from vapi.config import helpf
from vapi.methods.base import Grid, Method, MethodContext, Prepared, Rows, freeze
from vapi.models.protocols import Condition, index_condition
from vapi.objectives import prior_ce
from vapi.objectives.ste import relaxed_decode, ste_codebook


@dataclass
class SteConfig:
    tau: float = helpf(1.0, "Gumbel-softmax temperature (the reference's --ste-tau)")
    temperature: float = helpf(1.0, "the logits are divided by this before the Gumbel step (--temperature)")
    aux_ce_weight: float = helpf(0.1, "weight of the teacher-forced CE on the clean tokens (--aux-ce-weight); the "
                                      "reconstruction weights are reward.mse / reward.l1 (rec) and reward.lpips (perc)")
    raw_codebook: bool = helpf(False, "multiply the one-hot by the raw codebook weights, as the reference (its images "
                                      "then differ from the tokenizer's decode); default: the rows the tokenizer "
                                      "decodes with (l2-normalised for LlamaGen)")

    def __post_init__(self):
        if self.tau <= 0 or self.temperature <= 0:
            raise ValueError(f"ste.tau and ste.temperature must be > 0, got {self.tau}, {self.temperature}")
        if self.aux_ce_weight < 0:
            raise ValueError(f"ste.aux_ce_weight must be >= 0, got {self.aux_ce_weight}")


@dataclass
class SteWork(Rows):
    images: torch.Tensor  # [B, 3, H, W] real images in [-1, 1]
    cond: Condition
    gt_tokens: torch.Tensor  # [B, T]


class SteMethod(Method):
    def __init__(self, cfg: SteConfig, policy, tokenizer, reward, ctx: MethodContext):
        ste_codebook(tokenizer)  # refuses tokenizers without a codebook path (Janus), before any work
        if not reward.items:
            raise ValueError("objective.name=ste needs a reconstruction loss: set reward.mse (or reward.l1) and/or "
                             "reward.lpips > 0")
        self.cfg, self.model, self.tokenizer, self.reward, self.ctx = cfg, policy, freeze(tokenizer), reward, ctx

    @torch.no_grad()
    def prepare(self, images, cond, keep_images: int = 0) -> Prepared:
        gt_tokens = self.tokenizer.encode(images)  # [B, T]
        grid = None
        if keep_images:  # the image log: one hard sample per image, drawn with its own generator (the run's is kept)
            n, c = min(keep_images, images.shape[0]), self.cfg
            self.model.eval()
            with self.ctx.autocast():
                logits = self.model.teacher_forced_logits(index_condition(cond, slice(0, n)), gt_tokens[:n])
            sample, _ = relaxed_decode(self.tokenizer, logits.float(), c.tau, c.temperature, c.raw_codebook,
                                       torch.Generator(images.device).manual_seed(0))  # [n, 3, H, W]
            grid = Grid(images[:n], sample, -(sample - images[:n]).pow(2).flatten(1).mean(1))  # scored by −MSE
        return Prepared(SteWork(images, cond, gt_tokens), {}, grid=grid)

    def loss(self, work: SteWork):
        c = self.cfg
        self.model.train(True)
        with self.ctx.autocast():
            logits = self.wrapped(work.cond, work.gt_tokens)  # [mb, T, V]
        # The relaxation and the decoder run in float32, as the reference ("keep decoder stable").
        images, tokens = relaxed_decode(self.tokenizer, logits.float(), c.tau, c.temperature, c.raw_codebook,
                                        self.ctx.generator)  # [mb, 3, H, W], [mb, T]
        reward, terms = self.reward(images, work.images, work.cond, tokens)  # [mb]
        ce = prior_ce(logits.float(), work.gt_tokens)
        loss = -reward.mean() + c.aux_ce_weight * ce
        stats = {"loss": loss.detach(), "prior_ce": ce.detach(), "reward": reward.detach().mean()}
        stats.update({f"rewards/{k}/mean": v.detach().mean() for k, v in terms.items()})
        return loss, stats
