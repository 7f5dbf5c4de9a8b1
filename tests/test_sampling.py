"""vapi.sampling: filtering, guidance schedules, inverse-CDF draws, and sample-then-decode."""
import math

import pytest
import torch

from tiny import tiny_policy, tiny_tokenizer
from vapi.sampling import SamplingConfig, cfg_scale_at, filter_logits, guide, sample_images, sample_next


def test_filter_logits_top_k_then_top_p():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])  # [B, V]
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = filter_logits(logits, top_p=0.7)[0]  # p = .64, .24, ...: the token crossing 0.7 stays
    assert torch.isfinite(kept[:2]).all() and torch.isinf(kept[2:]).all()
    assert torch.equal(filter_logits(logits), logits)
    assert torch.isfinite(filter_logits(logits, top_p=1e-6)[0, 0])  # at least one token is kept


def test_guidance_schedules_end_at_the_scale():
    for schedule in ("constant", "linear", "power-cosine"):
        cfg = SamplingConfig(cfg_scale=4.0, cfg_schedule=schedule, cfg_power=2.0)
        assert cfg_scale_at(15, 16, cfg) == pytest.approx(4.0)
    assert cfg_scale_at(0, 16, SamplingConfig(cfg_scale=4.0, cfg_schedule="linear")) == 1.0
    assert cfg_scale_at(5, 16, SamplingConfig(cfg_scale=4.0, cfg_interval=2)) == 1.0
    half = cfg_scale_at(5, 11, SamplingConfig(cfg_scale=3.0, cfg_schedule="power-cosine"))
    assert half == pytest.approx(1 + 2 * (1 - math.cos(math.pi * 0.5)) / 2)
    cond, null = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    assert torch.equal(guide(torch.cat([cond, null]), 3.0), null + (cond - null) * 3.0)


@pytest.mark.parametrize("bad", [dict(top_k=-1), dict(top_p=0.0), dict(temperature=0.0), dict(cfg_schedule="x")])
def test_sampling_config_refuses_bad_values(bad):
    with pytest.raises(ValueError):
        SamplingConfig(**bad)


def test_inverse_cdf_sampling_matches_distribution_and_filters():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]]).repeat(20000, 1)  # [B, V]
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0))
    tok = sample_next(logits, SamplingConfig(), uniform=u)
    freq = torch.bincount(tok, minlength=5).double() / len(tok)
    assert torch.allclose(freq, logits[0].double().softmax(0), atol=0.01)
    top2 = sample_next(logits, SamplingConfig(top_k=2), uniform=u)
    assert set(top2.tolist()) == {0, 1}
    edge = sample_next(logits[:3], SamplingConfig(top_k=2), uniform=torch.tensor([0.0, 0.999999, 1 - 2**-24]))
    assert edge.tolist() == [0, 1, 1]  # never a filtered token, even at the ends of [0, 1)


def test_sample_images_batches_alike_and_clamps():
    policy, tokenizer = tiny_policy(), tiny_tokenizer()
    labels = torch.tensor([0, 1, 2, 3, 4])
    uniforms = torch.rand(5, policy.num_image_tokens, generator=torch.Generator().manual_seed(0))  # [B, T]
    cfg = SamplingConfig(cfg_scale=2.0)
    whole = sample_images(policy, tokenizer, labels, cfg, uniforms=uniforms)
    parts = sample_images(policy, tokenizer, labels, cfg, uniforms=uniforms, batch_size=2)
    assert whole.shape == (5, 3, 16, 16) and whole.dtype == torch.float32
    assert torch.allclose(whole, parts, atol=1e-5) and whole.abs().max() <= 1
    raw = sample_images(policy, tokenizer, labels, cfg, uniforms=uniforms, clamp=False)
    assert torch.equal(raw.clamp(-1, 1), whole)


def test_sample_images_returns_the_tokens_it_decoded():
    policy, tokenizer = tiny_policy(), tiny_tokenizer()
    labels = torch.tensor([0, 1, 2])
    images, tokens = sample_images(policy, tokenizer, labels, SamplingConfig(), batch_size=2, return_tokens=True,
                                   generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (3, policy.num_image_tokens) and tokens.dtype == torch.int64
    assert torch.allclose(images, tokenizer.decode(tokens).clamp(-1, 1), atol=1e-5)
