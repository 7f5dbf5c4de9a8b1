"""The VA-π objective as pure tensor math: PPO-clip surrogate + β x prior CE (+ optional KL), no model calls.

    loss = (policy + prior_weight * prior_ce + beta * kl) / grad_accum_steps

- policy: per-token max(-A * ratio, -A * clamp(ratio, 1-eps, 1+eps)) with ratio = exp(new - old) of tempered,
  unfiltered log-probs of the sampled tokens; mean over (kept) tokens, then over sequences.
- prior_ce: cross-entropy of the *untempered* logits against the clean tokens. The logits are those of the rollout's
  corrupted context, so with ξ > 0 this is the paper's noisy-context prior (ELBO) term; the paper calls its weight β.
- kl: k3 estimator exp(ref - new) - (ref - new) - 1 to a frozen reference, averaged like the policy term; off (0)
  by default as in the paper.

Departures from the reference loss block (train_c2i_grpo.py): the KL is a separate masked mean rather than added to
the per-token loss before averaging (identical value, as both means are linear); `clip_ratio` counts the tokens where
the clipped branch was selected (TRL's definition: those tokens carry no gradient) instead of |ratio - 1| > eps; the
CE is computed for the stats even at prior_weight 0 (without a graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from vapi.objectives.logprobs import gather_logprobs


class SurrogateStats(NamedTuple):
    """Detached per-token intermediates of `clipped_surrogate`."""

    ratio: torch.Tensor  # [N, T] exp(new - old)
    clipped_ratio: torch.Tensor  # [N, T] clamp(ratio, 1-eps, 1+eps)
    per_token_loss: torch.Tensor  # [N, T] max(-A*ratio, -A*clipped_ratio)
    clip_ratio: torch.Tensor  # [] fraction of kept tokens where the clipped branch was selected


class LossStats(NamedTuple):
    """Detached 0-dim tensors (no host sync per micro-batch; call .item() when logging)."""

    policy_loss: torch.Tensor
    prior_ce: torch.Tensor  # unweighted
    kl: torch.Tensor  # unweighted; 0 without ref_logits
    ratio_mean: torch.Tensor
    clip_ratio: torch.Tensor
    loss: torch.Tensor  # total before the division by grad_accum_steps


def _seq_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over kept tokens of each row, then over rows. x: [N, T], mask: [N, T] bool or None → []."""
    if mask is None:
        return x.mean(dim=-1).mean()
    m = mask.to(x.dtype)
    return ((x * m).sum(dim=-1) / m.sum(dim=-1).clamp_min(1)).mean()


def _token_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over all kept tokens (for diagnostics). x: [N, T] → []."""
    if mask is None:
        return x.float().mean()
    m = mask.to(torch.float32)
    return (x.float() * m).sum() / m.sum().clamp_min(1)


def token_dropout_mask(shape: tuple[int, int], prob: float, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Keep-mask [N, T] (bool) dropping each token with probability `prob`; prob 0 keeps all and draws nothing.

    A row left with no kept token keeps its first token, as in the reference, so every sequence still counts.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"token dropout probability must be in [0, 1], got {prob}")
    if prob == 0.0:
        return torch.ones(shape, dtype=torch.bool, device=device)
    keep = torch.rand(shape, generator=generator, device=device) >= prob  # [N, T]
    keep[:, 0] |= ~keep.any(dim=1)
    return keep


def clipped_surrogate(new_logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, epsilon: float,
                      mask: torch.Tensor | None = None) -> tuple[torch.Tensor, SurrogateStats]:
    """PPO-clip loss. new_logps, old_logps: [N, T]; advantages: [N]; mask: [N, T] keep-mask or None → ([], stats)."""
    adv = advantages.unsqueeze(1)  # [N, 1]
    ratio = torch.exp(new_logps - old_logps)  # [N, T]
    clipped_ratio = ratio.clamp(1.0 - epsilon, 1.0 + epsilon)  # [N, T]
    per_token_loss = torch.maximum(-adv * ratio, -adv * clipped_ratio)  # [N, T]
    loss = _seq_mean(per_token_loss, mask)
    clipped = ((ratio < 1.0 - epsilon) & (adv < 0)) | ((ratio > 1.0 + epsilon) & (adv > 0))  # [N, T]
    stats = SurrogateStats(ratio.detach(), clipped_ratio.detach(), per_token_loss.detach(),
                           _token_mean(clipped, mask).detach())
    return loss, stats


def prior_ce(logits: torch.Tensor, gt_tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of untempered logits [N, T, V] against clean tokens [N, T], in float32 → []."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), gt_tokens.reshape(-1))


def weighted_prior_ce(logits: torch.Tensor, gt_tokens: torch.Tensor, row_image: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """Prior CE of forward rows [b, T, V] against clean tokens [b, T], each row weighted by the number of scored
    sequences `row_image` [N] assigns to it (None: equal weights, = `prior_ce`) → []. Memory-lean (no log-softmax
    copy of the logits)."""
    nll = -gather_logprobs(logits, gt_tokens).mean(dim=-1)  # [b]
    if row_image is None:
        return nll.mean()
    weights = torch.bincount(row_image, minlength=nll.shape[0]).to(nll.dtype) / row_image.numel()  # [b]
    return (nll * weights).sum()


def per_token_kl(new_logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(new || ref) per token: exp(ref - new) - (ref - new) - 1 ≥ 0. [N, T] → [N, T]."""
    delta = ref_logps - new_logps
    return torch.exp(delta) - delta - 1.0


@dataclass(frozen=True)
class VaPiLoss:
    """The VA-π micro-batch loss; defaults are the paper's (clip 0.2, β 0.1, no KL)."""

    epsilon: float = 0.2  # PPO clip range (the reference's argparse default 1e-4 is not what its scripts run)
    policy_weight: float = 1.0  # weight of the clipped surrogate (the reward term); 0 = off: the matched control
    prior_weight: float = 0.1  # β: weight of the prior CE on clean tokens; 0 = off
    beta: float = 0.0  # weight of the k3 KL to a frozen reference policy; 0 = off
    temperature: float = 1.0  # must equal the rollout's sampling temperature, or ratio != 1 on-policy
    grad_accum_steps: int = 1  # the loss is divided by this so accumulated gradients average

    def __post_init__(self):
        if self.epsilon <= 0 or self.temperature <= 0:
            raise ValueError(f"epsilon and temperature must be > 0, got {self.epsilon}, {self.temperature}")
        if self.prior_weight < 0 or self.beta < 0 or self.policy_weight < 0:
            raise ValueError(f"weights must be >= 0, got policy_weight={self.policy_weight}, "
                             f"prior_weight={self.prior_weight}, beta={self.beta}")
        if self.grad_accum_steps < 1:
            raise ValueError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")

    def __call__(self, new_logits: torch.Tensor, tokens: torch.Tensor, old_logps: torch.Tensor,
                 advantages: torch.Tensor, gt_tokens: torch.Tensor, token_mask: torch.Tensor | None = None,
                 ref_logits: torch.Tensor | None = None, row_image: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, LossStats]:
        """new_logits: [b, T, V] (with grad) and gt_tokens: [b, T] for the b forward rows; tokens, old_logps,
        token_mask: [N, T] and advantages: [N] for the N scored sequences; row_image: [N], the forward row each
        sequence was sampled under (None: one row per sequence, b == N); ref_logits: [b, T, V] from a frozen policy
        on the same context, needed iff beta > 0.

        With the shared-context layout (b < N) the prior CE of each forward row is weighted by how many of the N
        sequences it carries, so the loss equals that of the N-row layout whenever rows of one image agree."""
        if self.beta > 0 and ref_logits is None:
            raise ValueError("beta > 0 needs ref_logits from the frozen reference policy")
        grad = torch.is_grad_enabled()
        new_logps = gather_logprobs(new_logits, tokens, row_image, self.temperature)  # [N, T]
        policy, surrogate = clipped_surrogate(new_logps, old_logps, advantages, self.epsilon, token_mask)
        total = self.policy_weight * policy if self.policy_weight != 1.0 else policy
        with torch.set_grad_enabled(grad and self.prior_weight > 0):
            ce = weighted_prior_ce(new_logits, gt_tokens, row_image)
        if self.prior_weight > 0:
            total = total + self.prior_weight * ce
        kl = torch.zeros((), device=policy.device)
        if ref_logits is not None:
            with torch.set_grad_enabled(grad and self.beta > 0):
                ref_logps = gather_logprobs(ref_logits.detach(), tokens, row_image, self.temperature)  # [N, T]
                kl = _seq_mean(per_token_kl(new_logps, ref_logps), token_mask)
            if self.beta > 0:
                total = total + self.beta * kl
        stats = LossStats(
            policy_loss=policy.detach(),
            prior_ce=ce.detach(),
            kl=kl.detach(),
            ratio_mean=_token_mean(surrogate.ratio, token_mask),
            clip_ratio=surrogate.clip_ratio,
            loss=total.detach(),
        )
        return total / self.grad_accum_steps, stats
