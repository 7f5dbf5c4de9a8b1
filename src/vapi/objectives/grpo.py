"""Free-running GRPO (AR-GRPO, reference `Kwai-Klear/AR-GRPO`) as pure tensor math: guidance, the loss.

AR-GRPO samples G whole images per condition with the KV cache and classifier-free guidance, scores them with
external rewards, normalises rewards within each group and applies TRL's clipped surrogate to each sample's own
tokens, plus β·k3 KL to the frozen initial policy (its C2I launcher: G 8, CFG 2.0, β 0.1, lr 1e-5).

Which distribution the log-probs are of: AR-GRPO samples from the CFG-guided distribution but takes log-probs with a
plain conditional forward of the policy (`_get_per_token_logps` calls the model on the sequence without the null
branch), so the ratio and the KL are those of the *conditional* distribution (`logprobs="conditional"`, the
default). `logprobs="guided"` takes them of the guided distribution that actually produced the samples,
uncond + s·(cond − uncond), at the cost of a second (null-condition) forward per update.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from vapi.objectives.losses import clipped_surrogate, per_token_kl
from vapi.objectives.rollout import token_logprobs

LOGPROBS = ("conditional", "guided")


def guided_logits(cond_logits: torch.Tensor, null_logits: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on teacher-forced logits: [N, T, V] each → [N, T, V]."""
    return null_logits + (cond_logits - null_logits) * scale


class GRPOStats(NamedTuple):
    """Detached 0-dim tensors."""

    policy_loss: torch.Tensor
    kl: torch.Tensor  # unweighted k3; 0 without ref_logits
    ratio_mean: torch.Tensor
    clip_ratio: torch.Tensor
    loss: torch.Tensor


@dataclass(frozen=True)
class GRPOLoss:
    """TRL/AR-GRPO micro-batch loss: clipped surrogate + beta · k3 KL, each a per-sequence token mean."""

    epsilon: float = 0.2
    beta: float = 0.1  # AR-GRPO's β
    temperature: float = 1.0

    def __post_init__(self):
        if self.epsilon <= 0 or self.temperature <= 0 or self.beta < 0:
            raise ValueError(f"need epsilon > 0, temperature > 0, beta >= 0; got {self}")

    def __call__(self, new_logits: torch.Tensor, tokens: torch.Tensor, old_logps: torch.Tensor,
                 advantages: torch.Tensor, ref_logits: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, GRPOStats]:
        """new_logits [N, T, V] (with grad), tokens/old_logps [N, T], advantages [N], ref_logits [N, T, V] or None."""
        if self.beta > 0 and ref_logits is None:
            raise ValueError("beta > 0 needs ref_logits from the frozen reference policy")
        new_logps = token_logprobs(new_logits, tokens, self.temperature)  # [N, T]
        policy, surrogate = clipped_surrogate(new_logps, old_logps, advantages, self.epsilon)
        total, kl = policy, torch.zeros((), device=policy.device)
        if ref_logits is not None:
            ref_logps = token_logprobs(ref_logits.detach(), tokens, self.temperature)  # [N, T]
            kl = per_token_kl(new_logps, ref_logps).mean(-1).mean()
            total = total + self.beta * kl
        stats = GRPOStats(policy.detach(), kl.detach(), surrogate.ratio.mean(), surrogate.clip_ratio,
                          total.detach())
        return total, stats
