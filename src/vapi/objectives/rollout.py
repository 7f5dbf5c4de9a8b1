"""Teacher-forced rollouts of VA-π: one teacher-forced forward per image, G sequences sampled from its logits.

VA-π never runs free autoregressive generation during training. The (ξ-corrupted) ground-truth context is fed once,
and each of the G "generations" draws every position independently from that position's teacher-forced
distribution. Rows are image-major: generation k of image b is row b*G + k (torch.repeat_interleave layout), which
`group_advantages` relies on.

Departures from the reference (`sample_one_sequence_from_tf` in train_c2i_grpo.py):
- the G draws are one `torch.multinomial(..., G, replacement=True)` call instead of G calls with one draw each: the
  same distribution, a different RNG stream;
- `old_logps` are always the *unfiltered* tempered log-probs. The reference gathers them from the top-k/top-p
  renormalised distribution while the training-time log-probs are unfiltered, so with filtering on its ratio starts
  below 1; here ratio == 1 exactly before the first update. With top_k=0, top_p=1 (the paper's runs) both agree.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from vapi.models.protocols import Condition, index_condition
from vapi.objectives.logprobs import _MIN_TEMPERATURE, gather_logprobs
from vapi.objectives.context_noise import perturb_context
from vapi.sampling import filter_logits

LogitsFn = Callable[[Condition, torch.Tensor], torch.Tensor]



class Rollout(NamedTuple):
    """One rollout batch of B images × G generations. Sequences are image-major (row b*G + k); the context, the
    condition and the clean tokens are stored once per image, since all G samples of an image share them."""

    tokens: torch.Tensor  # [B*G, T] long: sampled tokens
    old_logps: torch.Tensor  # [B*G, T] float32: log_softmax(logits / temperature) at `tokens`, unfiltered
    gt_tokens: torch.Tensor  # [B, T] long: clean ground-truth tokens (the prior-CE targets)
    context: torch.Tensor  # [B, T] long: the corrupted context fed to the model; reuse it for the update
    cond: Condition  # B rows: class ids [B] or a PromptCondition (caption features / prompt ids + mask)
    group_size: int  # G

    def micro_batch(self, rows: slice, shared: bool) -> MicroBatch:
        """Sequences `rows` (a contiguous slice of the B*G) as one update micro-batch.

        shared: one forward row per image the slice touches (the G samples of an image gather from it);
        otherwise one forward row per sequence, the image's context repeated (the reference's layout, where each
        row gets its own dropout mask in train mode).
        """
        G = self.group_size
        seq = torch.arange(rows.start, rows.stop, device=self.tokens.device)  # [N]
        image = torch.div(seq, G, rounding_mode="floor")  # [N]: the image each sequence belongs to
        if shared:
            first = rows.start // G
            images: slice | torch.Tensor = slice(first, (rows.stop - 1) // G + 1)
            row_image = image - first  # [N] → forward rows [b]
        else:
            images, row_image = image, torch.arange(len(seq), device=seq.device)
        return MicroBatch(self.tokens[rows], self.old_logps[rows], row_image, self.gt_tokens[images],
                          self.context[images], index_condition(self.cond, images))


class MicroBatch(NamedTuple):
    """What one forward/backward of the update sees: b forward rows and N ≥ b scored sequences."""

    tokens: torch.Tensor  # [N, T] sampled tokens
    old_logps: torch.Tensor  # [N, T] their sampling-time log-probs
    row_image: torch.Tensor  # [N] long: the forward row (of b) each sequence was sampled under
    gt_tokens: torch.Tensor  # [b, T] clean tokens of the forward rows
    context: torch.Tensor  # [b, T] corrupted context of the forward rows
    cond: Condition  # b rows


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log_softmax(logits / temperature) at `tokens`, in float32. logits: [N, T, V], tokens: [N, T] → [N, T]."""
    return gather_logprobs(logits, tokens, None, temperature)


def sample_from_logits(logits: torch.Tensor, num_generations: int, temperature: float = 1.0, top_k: int = 0,
                       top_p: float = 1.0, generator: torch.Generator | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw G sequences per image, every position independently. logits: [B, T, V] → (tokens, old_logps) [B*G, T].

    Filtering shapes only the sampling distribution; `old_logps` are the unfiltered tempered log-probs.
    """
    B, T, V = logits.shape
    G = num_generations
    scaled = logits.float() / max(temperature, _MIN_TEMPERATURE)  # [B, T, V]
    probs = filter_logits(scaled, top_k, top_p).softmax(dim=-1).reshape(B * T, V)  # [B*T, V]
    draws = torch.multinomial(probs, G, replacement=True, generator=generator)  # [B*T, G]
    tokens = draws.view(B, T, G).transpose(1, 2).reshape(B * G, T)  # [B*G, T], row b*G + k
    rows = torch.arange(B, device=logits.device).repeat_interleave(G)  # [B*G]: sequence → its image's logits row
    old_logps = gather_logprobs(logits, tokens, rows, temperature)  # [B*G, T]
    return tokens, old_logps


@torch.no_grad()
def teacher_forced_rollout(logits_fn: LogitsFn, cond: Condition, gt_tokens: torch.Tensor, *,
                           num_generations: int, vocab_size: int, context_noise: float = 0.0,
                           temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                           generator: torch.Generator | None = None) -> Rollout:
    """Corrupt the context, run one teacher-forced forward, sample G sequences per image.

    logits_fn(cond [B, ...], context [B, T]) → [B, T, V], row t predicting token t from context tokens < t (e.g.
    `LlamaGenGPT.teacher_forced_logits`); put the model in the mode you sample in (the reference uses eval) first.
    gt_tokens: [B, T] long. The returned context is what the update must feed again, so old and new log-probs are
    taken under the same corrupted context.
    """
    G = num_generations
    context = perturb_context(gt_tokens, context_noise, vocab_size, generator)  # [B, T]
    logits = logits_fn(cond, context)  # [B, T, V]
    tokens, old_logps = sample_from_logits(logits, G, temperature, top_k, top_p, generator)  # [B*G, T]
    return Rollout(tokens=tokens, old_logps=old_logps, gt_tokens=gt_tokens, context=context, cond=cond,
                   group_size=G)
