"""LlamaGen GPT behaviour beyond the fixtures: GQA and caption CFG with a KV cache, cache vs recompute, dropout."""
import pytest
import torch

from tiny import tiny_gpt
from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT, gpt_config
from vapi.sampling import SamplingConfig, generate, generate_uncached


def tiny(**kw):
    return tiny_gpt(**{"vocab_size": 32, "num_classes": 5, **kw})


def test_zero_init_head_gives_uniform_logits():
    torch.manual_seed(0)
    model = LlamaGenGPT(GPTConfig(dim=64, n_layer=1, n_head=4, vocab_size=32, block_size=16, num_classes=5)).eval()
    logits = model.teacher_forced_logits(torch.tensor([1]), torch.randint(0, 32, (1, 16)))
    assert torch.count_nonzero(logits) == 0


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_head=2), dict(n_kv_head=1)])
def test_kv_cache_matches_recompute(kw):
    model = tiny(**kw)
    cond = torch.tensor([0, 3, 4])
    for scale in (1.0, 2.5):
        cfg = SamplingConfig(cfg_scale=scale, greedy=True)
        assert torch.equal(generate(model, cond, cfg), generate_uncached(model, cond, cfg))


def test_sampling_is_seeded_and_cache_consistent():
    model = tiny(n_kv_head=2)
    cond = torch.tensor([1, 2])
    cfg = SamplingConfig(cfg_scale=3.0, temperature=1.0, top_k=10, top_p=0.9, cfg_schedule="linear")
    a = generate(model, cond, cfg, generator=torch.Generator().manual_seed(5))
    b = generate_uncached(model, cond, cfg, generator=torch.Generator().manual_seed(5))
    c = generate(model, cond, cfg, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("length", [3, 7, 130])
def test_t2i_cfg_with_any_caption_length(length):
    model = tiny(model_type="t2i", caption_dim=12, cls_token_num=length, n_kv_head=2)
    captions = torch.randn(2, length, 12)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, : length // 2] = 0  # left padding, as LlamaGen feeds T5 features
    cfg = SamplingConfig(cfg_scale=4.0, greedy=True)
    out = generate(model, captions, cfg, cond_mask=mask)
    assert out.shape == (2, 16)
    assert torch.equal(out, generate_uncached(model, captions, cfg, cond_mask=mask))
    null = model.null_condition(captions)
    assert null.shape == captions.shape
    assert torch.equal(null[0, : min(length, 120)], model.cls_embedding.uncond_embedding[: min(length, 120)])


def test_padded_caption_positions_are_ignored():
    model = tiny(model_type="t2i", caption_dim=12, cls_token_num=6)
    caps = torch.randn(1, 6, 12)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    other = caps.clone()
    other[:, :2] = torch.randn(1, 2, 12)  # change only the padded positions
    tokens = torch.randint(0, 32, (1, 16))
    a = model.teacher_forced_logits(caps, tokens, mask)
    b = model.teacher_forced_logits(other, tokens, mask)
    assert torch.allclose(a, b, atol=1e-5)


def test_teacher_forcing_is_causal():
    model = tiny()
    tokens = torch.randint(0, 32, (2, 16))
    changed = tokens.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 32
    a = model.teacher_forced_logits(torch.tensor([1, 2]), tokens)
    b = model.teacher_forced_logits(torch.tensor([1, 2]), changed)
    assert torch.allclose(a[:, :11], b[:, :11], atol=1e-6)  # row t sees tokens < t only
    assert not torch.allclose(a[:, 11:], b[:, 11:])


def test_class_dropout_only_in_train_mode():
    model = tiny(class_dropout_prob=1.0)
    tokens = torch.randint(0, 32, (2, 16))
    cond = torch.tensor([1, 2])
    null = model.teacher_forced_logits(model.null_condition(cond), tokens)
    model.train()
    assert torch.allclose(model.teacher_forced_logits(cond, tokens), null, atol=1e-6)
    model.eval()
    assert not torch.allclose(model.teacher_forced_logits(cond, tokens), null)


def test_presets_and_config_errors():
    assert gpt_config("GPT-B").dim == 768
    with pytest.raises(ValueError, match="unknown GPT preset"):
        gpt_config("GPT-Z")
    with pytest.raises(ValueError, match="square"):
        GPTConfig(dim=64, n_head=4, block_size=15)
    with pytest.raises(ValueError, match="n_kv_head"):
        GPTConfig(dim=64, n_head=4, n_kv_head=3, block_size=16)
