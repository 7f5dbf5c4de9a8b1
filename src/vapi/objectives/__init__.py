"""VA-π objectives: teacher-forced rollouts with ξ context noise, group advantages and the PPO-clip + prior-CE loss.

Pure tensor math; the trainer owns the model calls and passes logits in.
"""

from vapi.objectives.advantages import group_advantages
from vapi.objectives.context_noise import perturb_context
from vapi.objectives.logprobs import gather_logprobs, token_entropy
from vapi.objectives.losses import (
    LossStats,
    SurrogateStats,
    VaPiLoss,
    clipped_surrogate,
    per_token_kl,
    prior_ce,
    token_dropout_mask,
    weighted_prior_ce,
)
from vapi.objectives.rollout import (
    MicroBatch,
    Rollout,
    sample_from_logits,
    teacher_forced_rollout,
    token_logprobs,
)

__all__ = [
    "LossStats",
    "MicroBatch",
    "Rollout",
    "SurrogateStats",
    "VaPiLoss",
    "clipped_surrogate",
    "gather_logprobs",
    "group_advantages",
    "per_token_kl",
    "perturb_context",
    "prior_ce",
    "sample_from_logits",
    "teacher_forced_rollout",
    "token_dropout_mask",
    "token_entropy",
    "token_logprobs",
    "weighted_prior_ce",
]
