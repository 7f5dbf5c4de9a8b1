"""Janus-Pro through transformers (tiny random config): alignment of teacher forcing with generation, prompts and
the null prompt, the VQ tokenizer, and one VA-π update that moves exactly the trainable parameters.

The alignment test is how the reference's off-by-one is ruled out: transformers' own `generate` (greedy, CFG) and
vapi's KV-cache sampler produce the same tokens, and those tokens are exactly the argmax of vapi's teacher-forced
pass on them, row t at the hidden state before token t, while the reference's alignment (row t read one position
later, after token t was fed) does not reproduce them.
"""
import pytest
import torch

from t2i_tiny import BOI, BOS, PAD, tiny_janus_folder, tiny_janus_model, write_tar_shards
from tiny import tiny_config
from vapi.data.captions import CaptionTarDataset, ConditionedDataset
from vapi.models.janus import JanusImageTokenizer, JanusPolicy, JanusPromptEncoder, load_janus
from vapi.models.protocols import Generator, ImageTokenizer, PromptCondition
from vapi.sampling import SamplingConfig, generate, generate_uncached
from vapi.training.trainer import Trainer

PROMPTS = ["a photo of a red disk", "two blue square under the rain", "a green triangle"]


@pytest.fixture(scope="module")
def janus(tmp_path_factory):
    return load_janus(tiny_janus_folder(tmp_path_factory.mktemp("janus")))


def late_logits(policy: JanusPolicy, cond: PromptCondition, tokens: torch.Tensor) -> torch.Tensor:
    """The reference's `tf_logits_janus`: all T tokens fed, hidden states L .. L+T-1 read (row t has seen token t)."""
    lm = policy.model.model.language_model
    embeds = torch.cat([lm.get_input_embeddings()(cond.inputs),
                        policy.model.prepare_embeddings_for_image_generation(tokens)], dim=1)
    mask = torch.cat([cond.mask, torch.ones_like(tokens)], dim=1)
    hidden = lm(inputs_embeds=embeds, attention_mask=mask).last_hidden_state[:, cond.length:]
    return policy.model.model.generation_head(hidden).float()


def guided(policy, cond, tokens, scale, logits_fn=None):
    logits_fn = logits_fn or (lambda c, t: policy.teacher_forced_logits(c, t))
    cond_logits = logits_fn(cond, tokens)
    if scale == 1.0:
        return cond_logits
    null = logits_fn(policy.null_condition(cond), tokens)
    return null + scale * (cond_logits - null)


@torch.no_grad()
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_greedy_generation_is_the_argmax_of_teacher_forcing(janus, scale):
    policy, cond = janus.policy.eval(), janus.prompt_encoder(PROMPTS)
    assert isinstance(policy, Generator)
    tokens = generate(policy, cond, SamplingConfig(cfg_scale=scale, greedy=True))  # [3, 16], KV cache
    assert tokens.shape == (3, 16) and len(set(tokens.flatten().tolist())) > 8
    assert torch.equal(tokens, generate_uncached(policy, cond, SamplingConfig(cfg_scale=scale, greedy=True)))
    if scale > 1.0:  # transformers' generate (CFG only) is an independent implementation of the same sampler
        policy.model.generation_config.generation_kwargs = {"boi_token_id": policy.boi_id}  # not restored on load
        hf = policy.model.generate(input_ids=cond.inputs, attention_mask=cond.mask, generation_mode="image",
                                   do_sample=False, guidance_scale=scale)
        assert torch.equal(hf, tokens)
    aligned = guided(policy, cond, tokens, scale)  # [3, 16, V]
    assert torch.equal(aligned.argmax(-1), tokens)
    late = guided(policy, cond, tokens, scale, lambda c, t: late_logits(policy, c, t))
    assert (late.argmax(-1) == tokens).float().mean() < 0.5  # the reference's alignment does not reproduce them
    # and the late row t is the aligned row t+1: the same pass shifted by one position
    assert torch.allclose(late[:, :-1], aligned[:, 1:], atol=1e-4)


def test_prompts_and_null_prompt(janus):
    enc, policy = janus.prompt_encoder, janus.policy
    assert enc.format("a red disk") == "<|User|>: a red disk\n\n<|Assistant|>:"
    cond = enc(PROMPTS)
    tok = enc.processor.tokenizer
    bos, pad, boi = (tok.convert_tokens_to_ids(t) for t in (BOS, PAD, BOI))
    assert (cond.inputs[:, -1] == boi).all() and (cond.mask[:, -1] == 1).all()  # ends with <begin_of_image>
    for row, mask in zip(cond.inputs, cond.mask):
        n = int(mask.sum())
        assert row[-n] == bos and (row[:-n] == pad).all() and not mask[:-n].any()  # left padding, then BOS
    null = policy.null_condition(cond)
    assert torch.equal(null.mask, cond.mask)
    kept = (cond.inputs == bos) | (cond.inputs == boi)
    assert torch.equal(null.inputs[kept], cond.inputs[kept]) and (null.inputs[~kept] == pad).all()


def test_vq_tokenizer_roundtrip(janus):
    tokenizer = janus.tokenizer
    assert isinstance(tokenizer, ImageTokenizer) and tokenizer.image_size == 32 and tokenizer.vocab_size == 64
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    codes = tokenizer.encode(images)
    assert codes.shape == (2, 16) and codes.dtype == torch.long
    assert tokenizer.decode(codes).shape == (2, 3, 32, 32)
    # with unit-norm codebook rows, transformers' (unnormalised) nearest row is the l2-normalised one
    model, _ = tiny_janus_model()
    vq = model.model.vqmodel
    with torch.no_grad():
        vq.quantize.embedding.weight.copy_(torch.nn.functional.normalize(vq.quantize.embedding.weight, dim=-1))
        hf_codes = vq.encode(images).image_tokens.view(2, -1)
    assert torch.equal(JanusImageTokenizer(model).encode(images), hf_codes)


def janus_run(tmp_path, seed=0):
    """A tiny Janus policy, its VQ tokenizer and 4 captioned images."""
    model, processor = tiny_janus_model(seed)
    tok = processor.tokenizer
    policy = JanusPolicy(model, bos_id=tok.bos_token_id, boi_id=tok.convert_tokens_to_ids(BOI),
                         pad_id=tok.pad_token_id)
    shards = write_tar_shards(tmp_path / f"shards{seed}", n=4, corrupt_shard=False)
    return policy, JanusImageTokenizer(model), ConditionedDataset(CaptionTarDataset(shards, 32),
                                                                  JanusPromptEncoder(processor))


def test_one_vapi_update_changes_exactly_the_trainable_parameters(tmp_path):
    policy, tokenizer, data = janus_run(tmp_path)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    trainable = {k for k, p in policy.named_parameters() if p.requires_grad}
    frozen_prefixes = ("model.model.vqmodel.", "model.model.vision_model.", "model.model.aligner.")
    assert trainable and all(not k.startswith(frozen_prefixes) for k in trainable)
    assert any(k.startswith("model.model.language_model.") for k in trainable)
    assert any(k.startswith("model.model.generation_head.") for k in trainable)
    metrics = Trainer(tiny_config(tmp_path, max_steps=1), policy, tokenizer, data).step()
    assert torch.isfinite(torch.tensor([metrics["loss"], metrics["reward"]])).all()
    changed = {k for k, v in policy.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == trainable | {"model.lm_head.weight"}  # lm_head is tied to the (trained) text embeddings
    assert policy.model.lm_head.weight is policy.model.model.language_model.embed_tokens.weight


def test_resume_reads_the_hf_folder_bit_exactly(tmp_path):
    """The checkpoint's weights are its HF model folder only (lm_head is left out there, tied to the embeddings):
    a resume from it, on a policy of other weights, ends where the uninterrupted run does."""
    def config(run, steps):
        cfg = tiny_config(tmp_path / run, max_steps=steps, save_steps=1)
        cfg.objective.policy_mode = "eval"
        return cfg

    full, tokenizer, data = janus_run(tmp_path)
    Trainer(config("a", 2), full, tokenizer, data).train()
    Trainer(config("b", 1), *janus_run(tmp_path)).train()
    resumed, tokenizer, data = janus_run(tmp_path, seed=1)
    Trainer(config("b", 2), resumed, tokenizer, data, resume=True).train()
    assert resumed.model.lm_head.weight is resumed.model.model.language_model.embed_tokens.weight
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
