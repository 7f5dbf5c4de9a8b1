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

from vapi.methods.base import Grid, Method, MethodContext, Prepared, freeze
from vapi.models.protocols import has_train_randomness, repeat_condition
from vapi.objectives import (Rollout, VaPiLoss, group_advantages, teacher_forced_rollout, token_dropout_mask,
                             token_entropy, weighted_prior_ce)
from vapi.objectives.rewards import score_tokens


def uses_shared_update(layout: str, policy_mode: str, policy: torch.nn.Module) -> bool:
    """`objective.update_layout`: shared | per_sample | auto (shared whenever the update's numerator is dropout-free:
    policy_mode eval or twice, or a policy without train-mode randomness)."""
    if layout != "auto":
        return layout == "shared"
    return policy_mode in ("eval", "twice") or not has_train_randomness(policy)


@dataclass
class VaPiWork:
    """One rollout batch (B images × G sequences, image-major) and its advantages [B*G]; rows are sequences."""

    rollout: Rollout
    advantages: torch.Tensor  # [B*G]
    shared: bool  # the update layout: one forward per image (shared) or per sequence

    def __len__(self) -> int:
        return self.advantages.shape[0]

    def select(self, rows: slice):
        return self.rollout.micro_batch(rows, self.shared), self.advantages[rows]


class VaPiMethod(Method):
    def __init__(self, cfg, policy, tokenizer, reward, ctx: MethodContext):
        """cfg: the run's `objective` section (training.config.ObjectiveConfig)."""
        if not reward.items:
            raise ValueError("objective.name=vapi needs a reward: set reward.mse / reward.lpips / ... > 0")
        self.cfg, self.model, self.tokenizer, self.reward, self.ctx = cfg, policy, freeze(tokenizer), reward, ctx
        self.ref_policy = freeze(copy.deepcopy(policy)) if cfg.beta > 0 else None
        self.shared_update = uses_shared_update(cfg.update_layout, cfg.policy_mode, policy)
        self.loss_fn = VaPiLoss(epsilon=cfg.epsilon, policy_weight=cfg.policy_weight,
                                prior_weight=0.0 if cfg.policy_mode == "twice" else cfg.prior_weight,
                                beta=cfg.beta, temperature=cfg.temperature)

    @torch.no_grad()
    def prepare(self, images, cond, keep_images: int = 0) -> Prepared:
        o, G = self.cfg, self.cfg.num_generations
        gt_tokens = self.tokenizer.encode(images)  # [B, T]
        self.model.train(o.rollout_mode == "train")
        seen = {}

        def logits_fn(c, context):
            with self.ctx.autocast():
                logits = self.wrapped(c, context)  # [B, T, V] float32
            seen["entropy"] = token_entropy(logits, o.temperature).item()
            return logits

        rollout = teacher_forced_rollout(
            logits_fn, cond, gt_tokens, num_generations=G, vocab_size=self.model.vocab_size,
            context_noise=o.context_noise, temperature=o.temperature, top_k=o.top_k, top_p=o.top_p,
            generator=self.ctx.generator)
        target = images.repeat_interleave(G, dim=0)  # [B*G, 3, H, W]
        rewards, terms, decoded = score_tokens(self.reward, self.tokenizer, rollout.tokens, target,
                                               repeat_condition(cond, G), keep_images=keep_images * G)  # [B*G]
        advantages = group_advantages(rewards, G, clip=o.adv_clip)  # [B*G]
        metrics = {"entropy": seen["entropy"], "advantage_abs": advantages.abs().mean().item()}
        # TRL's names: rewards/<term>/mean is the term's reward (a negated cost) before its weight
        metrics.update({f"rewards/{k}/mean": v.mean().item() for k, v in terms.items()})
        metrics["frac_reward_zero_std"] = (rewards.view(-1, G).std(dim=1) == 0).float().mean().item()
        grid = Grid(images[:keep_images], decoded, rewards[: keep_images * G]) if keep_images else None
        return Prepared(VaPiWork(rollout, advantages, self.shared_update), metrics, rewards, grid)

    def loss(self, work):
        """work: (MicroBatch of b forward rows and N sequences, advantages [N]) from `VaPiWork.select`."""
        batch, advantages = work
        o = self.cfg
        mask = None
        if o.token_dropout > 0:
            mask = token_dropout_mask(tuple(batch.tokens.shape), o.token_dropout, self.ctx.generator,
                                      batch.tokens.device)  # [N, T]
        ref_logits = None
        if self.ref_policy is not None:
            with torch.no_grad(), self.ctx.autocast():
                ref_logits = self.ref_policy.teacher_forced_logits(batch.cond, batch.context)  # [b, T, V]
        self.model.train(o.policy_mode == "train")
        with self.ctx.autocast():
            logits = self.wrapped(batch.cond, batch.context)  # [b, T, V] float32
        loss, stats = self.loss_fn(logits, batch.tokens, batch.old_logps, advantages, batch.gt_tokens, mask,
                                   ref_logits, batch.row_image)
        if o.policy_mode == "twice" and o.prior_weight > 0:
            # The ratio was taken in eval mode; the prior term gets its own train-mode (dropout) pass, as the reference.
            self.model.train(True)
            with self.ctx.autocast():
                train_logits = self.wrapped(batch.cond, batch.context)  # [b, T, V]
            prior = weighted_prior_ce(train_logits, batch.gt_tokens, batch.row_image)
            loss = loss + o.prior_weight * prior
            # log what was optimised: the total with the train-mode CE term, and that CE
            stats = stats._replace(prior_ce=prior.detach(), loss=stats.loss + o.prior_weight * prior.detach())
        return loss, stats._asdict()
