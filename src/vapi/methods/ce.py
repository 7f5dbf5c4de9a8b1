"""`ce`: the control. Plain teacher-forced next-token cross-entropy on the clean context, on the same images, steps
and optimizer as VA-π, so the two differ only in the objective. Trains the generator."""
from __future__ import annotations

from dataclasses import dataclass


import torch

from vapi.methods.base import Method, MethodContext, Prepared, Rows, freeze
from vapi.models.protocols import Condition
from vapi.objectives import prior_ce


@dataclass
class CEWork(Rows):
    cond: Condition  # B rows
    gt_tokens: torch.Tensor  # [B, T] clean tokens of the real images


class CEMethod(Method):
    def __init__(self, policy, tokenizer, ctx: MethodContext):
        self.model, self.tokenizer, self.ctx = policy, freeze(tokenizer), ctx

    @torch.no_grad()
    def prepare(self, images, cond, keep_images: int = 0) -> Prepared:
        return Prepared(CEWork(cond, self.tokenizer.encode(images)), {})  # gt tokens [B, T]

    def loss(self, work: CEWork):
        self.model.train(True)
        with self.ctx.autocast():
            logits = self.wrapped(work.cond, work.gt_tokens).float()  # [mb, T, V]
        loss = prior_ce(logits, work.gt_tokens)
        return loss, {"loss": loss.detach(), "prior_ce": loss.detach()}
