"""`vapi`: VA-π. Teacher-forced rollouts on the ξ-corrupted context, pixel rewards against the real image, group
advantages, the PPO-clip surrogate plus β·prior CE (the paper's method; options in the `objective` section).

Per rollout batch (reference: `train_c2i_grpo.py`):
  1. x* = VQ-encode(real images); the context is corrupted with probability ξ;
  2. one teacher-forced pass on the corrupted context (rollout mode: eval, as the reference); G sequences are
     sampled from its per-position distributions;
  3. every sample is decoded by the frozen tokenizer and scored against its real image;
  4. group-normalised, clipped advantages; per micro-batch the clipped surrogate on the same corrupted context plus
     β·CE against the clean tokens.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from vapi.methods.base import Grid, Method, MethodContext, Prepared, Rows, freeze
from vapi.models.protocols import Condition
from vapi.objectives import VaPiLoss, group_advantages, prior_ce, teacher_forced_rollout, token_dropout_mask
from vapi.objectives.rewards import score_tokens


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean per-position entropy (nats) of logits [N, T, V]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


@dataclass
class VaPiWork(Rows):
    """One rollout batch of B images × G generations, image-major (row b*G + k)."""

    tokens: torch.Tensor  # [B*G, T] sampled tokens
    old_logps: torch.Tensor  # [B*G, T]
    gt_tokens: torch.Tensor  # [B*G, T] clean tokens (the prior-CE targets)
    context: torch.Tensor  # [B*G, T] the corrupted context of the rollout, fed again in the update
    cond: Condition  # B*G rows
    advantages: torch.Tensor  # [B*G]


class VaPiMethod(Method):
    def __init__(self, cfg, policy, tokenizer, reward, ctx: MethodContext):
        """cfg: the run's `objective` section (training.config.ObjectiveConfig)."""
        if not reward.items:
            raise ValueError("objective.name=vapi needs a reward: set reward.mse / reward.lpips / ... > 0")
        self.cfg, self.model, self.tokenizer, self.reward, self.ctx = cfg, policy, freeze(tokenizer), reward, ctx
        self.rows_per_image = cfg.num_generations
        self.ref_policy = freeze(copy.deepcopy(policy)) if cfg.beta > 0 else None
        self.loss_fn = VaPiLoss(epsilon=cfg.epsilon, prior_weight=0.0 if cfg.policy_mode == "twice" else
                                cfg.prior_weight, kl_weight=cfg.beta, temperature=cfg.temperature)

    @torch.no_grad()
    def prepare(self, images, cond, keep_images: int = 0) -> Prepared:
        o, G = self.cfg, self.cfg.num_generations
        gt_tokens = self.tokenizer.encode(images)  # [B, T]
        self.model.train(o.rollout_mode == "train")
        seen = {}

        def logits_fn(c, context):
            with self.ctx.autocast():
                logits = self.wrapped(c, context).float()  # [B, T, V]
            seen["entropy"] = token_entropy(logits / o.temperature).item()
            return logits

        rollout = teacher_forced_rollout(
            logits_fn, cond, gt_tokens, num_generations=G, vocab_size=self.model.vocab_size,
            context_noise=o.context_noise, temperature=o.temperature, top_k=o.top_k, top_p=o.top_p,
            generator=self.ctx.generator)
        target = images.repeat_interleave(G, dim=0)  # [B*G, 3, H, W]
        rewards, terms, decoded = score_tokens(self.reward, self.tokenizer, rollout.tokens, target, rollout.cond,
                                               keep_images=keep_images * G)  # [B*G]
        advantages = group_advantages(rewards, G, clip=o.adv_clip)  # [B*G]
        metrics = {"entropy": seen["entropy"], "advantage_abs": advantages.abs().mean().item()}
        metrics.update({f"reward/{k}": v.mean().item() for k, v in terms.items()})
        work = VaPiWork(rollout.tokens, rollout.old_logps, rollout.gt_tokens, rollout.context, rollout.cond,
                        advantages)
        grid = Grid(images[:keep_images], decoded, rewards[: keep_images * G]) if keep_images else None
        return Prepared(work, metrics, rewards, grid)

    def loss(self, work: VaPiWork):
        o = self.cfg
        mask = None
        if o.token_dropout > 0:
            mask = token_dropout_mask(tuple(work.tokens.shape), o.token_dropout, self.ctx.generator,
                                      work.tokens.device)
        ref_logits = None
        if self.ref_policy is not None:
            with torch.no_grad(), self.ctx.autocast():
                ref_logits = self.ref_policy.teacher_forced_logits(work.cond, work.context).float()
        self.model.train(o.policy_mode == "train")
        with self.ctx.autocast():
            logits = self.wrapped(work.cond, work.context).float()  # [mb, T, V]
        loss, stats = self.loss_fn(logits, work.tokens, work.old_logps, work.advantages, work.gt_tokens, mask,
                                   ref_logits)
        if o.policy_mode == "twice" and o.prior_weight > 0:
            # The ratio was taken in eval mode; the prior term gets its own train-mode (dropout) pass, as the reference.
            self.model.train(True)
            with self.ctx.autocast():
                train_logits = self.wrapped(work.cond, work.context).float()
            loss = loss + o.prior_weight * prior_ce(train_logits, work.gt_tokens)
        return loss, stats._asdict()
