"""LlamaGen T2I with FLAN-T5 conditions: LlamaGen's left padding, the disk cache, generation vs teacher forcing,
and one VA-π update that moves exactly the GPT (T5 and the VQ tokenizer frozen)."""
import pytest
import torch

from t2i_tiny import CAPTION_TOKENS, T5_DIM, tiny_t2i_policy, tiny_t5_folder, write_caption_folder
from tiny import tiny_config, tiny_tokenizer
from vapi.data.captions import CaptionFolderDataset, ConditionedDataset
from vapi.models.protocols import Generator, PromptCondition, PromptEncoder
from vapi.models.text_encoder import T5CaptionEncoder, TextEncoderConfig
from vapi.sampling import SamplingConfig, generate, generate_uncached
from vapi.training.trainer import Trainer

PROMPTS = ["a red disk", "two blue square under the rain", "a"]


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    return tiny_t5_folder(tmp_path_factory.mktemp("t5"))


def encoder(t5_folder, cache, **kw):
    return T5CaptionEncoder(TextEncoderConfig(path=t5_folder, max_length=CAPTION_TOKENS, dtype="fp32",
                                              cache_dir=str(cache), **kw))


def test_t5_features_are_left_padded_as_llamagen(t5_folder, tmp_path):
    enc = encoder(t5_folder, tmp_path / "cache")
    assert isinstance(enc, PromptEncoder)
    cond = enc(PROMPTS)
    assert cond.inputs.shape == (3, CAPTION_TOKENS, T5_DIM) and cond.inputs.dtype == torch.float32
    # word tokens + EOS; the real tokens sit at the end (LlamaGen moves them there and zeroes the rest)
    lengths = [len(p.split()) + 1 for p in PROMPTS]
    lengths = [min(n, CAPTION_TOKENS) for n in lengths]
    assert cond.mask.sum(1).tolist() == lengths
    for i, n in enumerate(lengths):
        assert cond.mask[i, -n:].all() and not cond.mask[i, :-n].any()
        assert (cond.inputs[i, :-n] == 0).all()
    # the real-token features are T5's own (right-padded run through the encoder, then moved)
    from transformers import AutoTokenizer, T5EncoderModel
    tok, model = AutoTokenizer.from_pretrained(t5_folder), T5EncoderModel.from_pretrained(t5_folder).eval()
    batch = tok([PROMPTS[0]], max_length=CAPTION_TOKENS, padding="max_length", truncation=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**batch).last_hidden_state[0, : lengths[0]]
    assert torch.allclose(cond.inputs[0, -lengths[0]:], ref, atol=1e-6)


def test_t5_cache_is_keyed_by_encoder_and_caption(t5_folder, tmp_path):
    enc = encoder(t5_folder, tmp_path / "cache")
    first = enc(PROMPTS)
    assert enc.computed == 3 and len(list(enc.cache_dir.rglob("*.safetensors"))) == 3
    again = encoder(t5_folder, tmp_path / "cache")
    assert torch.equal(again(PROMPTS + ["a red disk"]).inputs[:3], first.inputs)
    assert again.computed == 0 and again._model is None  # everything from disk, T5 never loaded
    other = encoder(t5_folder, tmp_path / "cache", batch_size=2)
    assert other.cache_dir == enc.cache_dir  # batch size does not change the features
    longer = T5CaptionEncoder(TextEncoderConfig(path=t5_folder, max_length=4, dtype="fp32",
                                                cache_dir=str(tmp_path / "cache")))
    assert longer.cache_dir != enc.cache_dir  # truncation length is part of the key
    assert longer(["two blue square under the rain"]).mask.sum().item() == 4


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_t2i_greedy_generation_is_the_argmax_of_teacher_forcing(t5_folder, tmp_path, scale):
    policy = tiny_t2i_policy().eval()
    assert isinstance(policy, Generator)
    cond = encoder(t5_folder, tmp_path / "cache")(PROMPTS)
    tokens = generate(policy, cond, SamplingConfig(cfg_scale=scale, greedy=True))  # [3, 16]
    assert torch.equal(tokens, generate_uncached(policy, cond, SamplingConfig(cfg_scale=scale, greedy=True)))
    with torch.no_grad():
        logits = policy.teacher_forced_logits(cond, tokens)  # [3, 16, V]
        if scale != 1.0:
            null = policy.teacher_forced_logits(policy.null_condition(cond), tokens)
            logits = null + scale * (logits - null)
    assert torch.equal(logits.argmax(-1), tokens)
    assert len(set(tokens.flatten().tolist())) > 4  # not a degenerate constant sequence
    # the explicit-mask form is the same computation
    assert torch.equal(policy.teacher_forced_logits(cond.inputs, tokens, cond.mask),
                       policy.teacher_forced_logits(cond, tokens))


def test_one_vapi_update_changes_exactly_the_gpt(t5_folder, tmp_path):
    enc = encoder(t5_folder, tmp_path / "cache")
    data = ConditionedDataset(CaptionFolderDataset(write_caption_folder(tmp_path / "caps", n=4, image_size=16), 16),
                              enc)
    t5_before = {k: v.clone() for k, v in enc._model.state_dict().items()}
    policy, tokenizer = tiny_t2i_policy(), tiny_tokenizer()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    tok_before = {k: v.clone() for k, v in tokenizer.state_dict().items()}
    metrics = Trainer(tiny_config(tmp_path, max_steps=1), policy, tokenizer, data).step()
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    changed = {k for k, v in policy.state_dict().items() if not torch.equal(v, before[k])}
    trainable = {k for k, p in policy.named_parameters() if p.requires_grad}
    assert changed == trainable  # every parameter moved; the null-caption buffer did not
    assert "cls_embedding.uncond_embedding" not in changed
    assert all(torch.equal(v, tok_before[k]) for k, v in tokenizer.state_dict().items())
    assert all(torch.equal(v, t5_before[k]) for k, v in enc._model.state_dict().items())
    assert not any(p.requires_grad for p in enc._model.parameters())
    assert isinstance(next(iter([data[0][1]])), PromptCondition)
