"""`ce`: the control. Plain teacher-forced next-token cross-entropy on the clean context, on the same images, steps,
optimizer and update mode (objective.policy_mode) as VA-π, so the two differ only in the objective. The closest
control is VA-π itself with objective.policy_weight = 0: the same rollouts and update without the reward term.
Trains the generator."""
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
    def __init__(self, policy, tokenizer, ctx: MethodContext, policy_mode: str = "train"):
        """policy_mode: objective.policy_mode, the model mode VA-π updates in (eval: no dropout), so that the
        control differs from VA-π only in the objective."""
        self.model, self.tokenizer, self.ctx = policy, freeze(tokenizer), ctx
        self.train_mode = policy_mode != "eval"

    @torch.no_grad()
    def prepare(self, images, cond, keep_images: int = 0) -> Prepared:
        return Prepared(CEWork(cond, self.tokenizer.encode(images)), {})  # gt tokens [B, T]

    def loss(self, work: CEWork):
        self.model.train(self.train_mode)
        with self.ctx.autocast():
            logits = self.wrapped(work.cond, work.gt_tokens).float()  # [mb, T, V]
        loss = prior_ce(logits, work.gt_tokens)
        return loss, {"loss": loss.detach(), "prior_ce": loss.detach()}
