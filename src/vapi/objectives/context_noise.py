"""The ξ context noise of VA-π: corrupt the teacher-forcing context before the rollout forward.

Each context token is, with probability ξ, replaced by a token drawn uniformly from [0, V); the draw may equal the
original token, as in the reference, so the fraction of tokens that actually change is ξ(1 - 1/V).

Departures from the reference (`perturb_teacher_forcing_inputs` in train_c2i_grpo.py):
- the Bernoulli mask and the replacement tokens both come from `generator` (the reference draws the mask from the
  global RNG), so a seeded rollout is reproducible on its own;
- it perturbs the full [B, T] token row that `teacher_forced_logits` receives; the last token is never read by a causal
  teacher-forced model, so the extra draws change nothing but RNG consumption.
"""

from __future__ import annotations

import torch


def perturb_context(tokens: torch.Tensor, prob: float, vocab_size: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each token with a uniform random token with probability `prob`. tokens: [B, T] long → [B, T].

    `prob == 0` returns `tokens` itself and consumes no random numbers, so switching the noise off leaves the RNG
    stream (and therefore every later sample) unchanged.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"context noise probability must be in [0, 1], got {prob}")
    if prob == 0.0:
        return tokens
    replace = torch.rand(tokens.shape, generator=generator, device=tokens.device) < prob  # [B, T]
    noise = torch.randint(0, vocab_size, tokens.shape, generator=generator, device=tokens.device,
                          dtype=tokens.dtype)  # [B, T]
    return torch.where(replace, noise, tokens)
