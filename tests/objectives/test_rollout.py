"""Teacher-forced rollouts: per-position independent sampling, image-major layout, filtering, old log-probs."""

import pytest
import torch
import torch.nn.functional as F

from vapi.objectives import Rollout, sample_from_logits, teacher_forced_rollout, token_logprobs
from vapi.sampling import filter_logits


def _logits(B=2, T=3, V=5, seed=0):
    return torch.randn(B, T, V, generator=torch.Generator().manual_seed(seed)) * 2


def test_old_logps_are_unfiltered_tempered_log_softmax_at_the_samples():
    logits = _logits()
    tokens, old = sample_from_logits(logits, 4, temperature=0.7, top_k=2, top_p=0.9,
                                     generator=torch.Generator().manual_seed(0))
    assert tokens.shape == old.shape == (8, 3)
    expected = F.log_softmax(logits / 0.7, dim=-1).repeat_interleave(4, 0).gather(-1, tokens[..., None])[..., 0]
    assert torch.allclose(old, expected)
    assert torch.allclose(old, token_logprobs(logits.repeat_interleave(4, 0), tokens, 0.7))


def test_top_k_one_is_argmax():
    logits = _logits()
    tokens, _ = sample_from_logits(logits, 3, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tokens, logits.argmax(-1).repeat_interleave(3, 0))


def test_tiny_top_p_keeps_exactly_the_top_token():
    logits = _logits()
    kept = filter_logits(logits, top_p=1e-6).isfinite()
    assert torch.equal(kept, F.one_hot(logits.argmax(-1), 5).bool())
    tokens, _ = sample_from_logits(logits, 3, top_p=1e-6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tokens, logits.argmax(-1).repeat_interleave(3, 0))


def test_top_p_keeps_the_token_that_crosses_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert filter_logits(logits, top_p=0.6).isfinite().tolist() == [[True, True, False, False]]
    assert filter_logits(logits, top_k=3, top_p=1.0).isfinite().tolist() == [[True, True, True, False]]
    assert filter_logits(logits).isfinite().all()


def test_samples_follow_softmax_independently_per_position():
    logits = _logits(B=1, T=2, V=4)
    G = 20000
    tokens, _ = sample_from_logits(logits, G, temperature=1.5, generator=torch.Generator().manual_seed(0))
    probs = F.softmax(logits[0] / 1.5, dim=-1)  # [T, V]
    freq = torch.stack([torch.bincount(tokens[:, t], minlength=4) for t in range(2)]).float() / G
    assert (freq - probs).abs().max() < 0.015
    joint = torch.bincount(tokens[:, 0] * 4 + tokens[:, 1], minlength=16).float().view(4, 4) / G
    assert (joint - probs[0][:, None] * probs[1][None, :]).abs().max() < 0.015


def test_rollout_layout_context_and_no_grad():
    B, G, T, V = 2, 3, 6, 8
    calls = []

    def logits_fn(cond, context):
        calls.append((cond, context, torch.is_grad_enabled()))
        return F.one_hot(cond[:, None].expand(-1, T), V).float() * 50.0  # image b puts all mass on token cond[b]

    cond = torch.tensor([5, 2])
    gt = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(0))
    ro = teacher_forced_rollout(logits_fn, cond, gt, num_generations=G, vocab_size=V,
                                generator=torch.Generator().manual_seed(0))
    assert isinstance(ro, Rollout) and ro.group_size == G
    assert len(calls) == 1 and calls[0][2] is False
    assert torch.equal(calls[0][1], gt)  # ξ = 0 feeds the clean context
    assert torch.equal(ro.tokens, torch.tensor([5, 5, 5, 2, 2, 2])[:, None].expand(-1, T))
    assert torch.equal(ro.cond, cond)  # stored once per image
    assert torch.equal(ro.gt_tokens, gt) and torch.equal(ro.context, ro.gt_tokens)
    assert ro.old_logps.shape == (B * G, T) and not ro.old_logps.requires_grad


def test_micro_batch_layouts():
    B, G, T, V = 3, 4, 2, 5
    gt = torch.arange(B * T).view(B, T) % V
    ro = Rollout(tokens=torch.arange(B * G * T).view(B * G, T) % V, old_logps=torch.zeros(B * G, T), gt_tokens=gt,
                 context=gt + 1, cond=torch.tensor([7, 8, 9]), group_size=G)
    rows = slice(2, 9)  # the last 2 samples of image 0, all of image 1, the first of image 2
    shared = ro.micro_batch(rows, shared=True)
    assert torch.equal(shared.cond, torch.tensor([7, 8, 9])) and torch.equal(shared.context, gt + 1)
    assert shared.row_image.tolist() == [0, 0, 1, 1, 1, 1, 2]
    per_sample = ro.micro_batch(rows, shared=False)
    assert per_sample.cond.tolist() == [7, 7, 8, 8, 8, 8, 9] and per_sample.row_image.tolist() == list(range(7))
    assert torch.equal(per_sample.gt_tokens, gt[[0, 0, 1, 1, 1, 1, 2]])
    for mb in (shared, per_sample):
        assert torch.equal(mb.tokens, ro.tokens[rows]) and torch.equal(mb.old_logps, ro.old_logps[rows])
        # both layouts put each sequence under its own image's context
        assert torch.equal(mb.context[mb.row_image], (gt + 1)[[0, 0, 1, 1, 1, 1, 2]])


def test_rollout_feeds_the_corrupted_context_it_returns():
    B, G, T, V = 2, 2, 64, 16
    seen = []

    def logits_fn(cond, context):
        seen.append(context)
        return torch.zeros(context.shape[0], context.shape[1], V)

    gt = torch.zeros(B, T, dtype=torch.long)
    ro = teacher_forced_rollout(logits_fn, torch.arange(B), gt, num_generations=G, vocab_size=V,
                                context_noise=0.5, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(seen[0], gt)
    assert torch.equal(ro.context, seen[0])
    assert torch.equal(ro.gt_tokens, gt)
    assert ro.old_logps.allclose(torch.full((B * G, T), -torch.log(torch.tensor(16.0)).item()))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_token_logprobs(temperature):
    logits = _logits()
    tokens = logits.argmin(-1)
    expected = F.log_softmax(logits / temperature, -1).gather(-1, tokens[..., None])[..., 0]
    assert torch.allclose(token_logprobs(logits, tokens, temperature), expected)
