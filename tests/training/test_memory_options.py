"""Activation checkpointing and LoRA: same gradients / only adapters train / the merged export equals base + B A."""
import copy

import pytest
import torch

from tiny import tiny_config, tiny_policy, tiny_tokenizer
from vapi.models.weights_io import load_model
from vapi.models.lora import LoraConfig, apply_lora, merged_state_dict
from vapi.training.parallelize import apply_activation_checkpointing
from vapi.training.trainer import Trainer


def _grads(policy, train_mode):
    policy.train(train_mode)
    torch.manual_seed(7)  # the same dropout masks for both runs
    tokens = torch.randint(0, 32, (3, 16), generator=torch.Generator().manual_seed(0))
    logits = policy(torch.tensor([1, 2, 3]), tokens)
    (logits.square().mean() + logits[..., 0].mean()).backward()
    return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("train_mode", [False, True])
def test_activation_checkpointing_keeps_gradients(train_mode):
    plain = tiny_policy()
    checkpointed = apply_activation_checkpointing(copy.deepcopy(plain))
    want, got = _grads(plain, train_mode), _grads(checkpointed, train_mode)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.allclose(want[name], got[name], atol=1e-7), name
    # names unchanged, and a deep copy runs its own blocks
    assert plain.state_dict().keys() == checkpointed.state_dict().keys()
    twin = copy.deepcopy(checkpointed)
    with torch.no_grad():
        twin.layers[0].attention.wo.weight.zero_()
    x = (torch.tensor([1]), torch.zeros(1, 16, dtype=torch.long))
    checkpointed.eval(), twin.eval()
    assert not torch.equal(checkpointed(*x), twin(*x))


def test_trainer_with_gradient_checkpointing_matches(tmp_path, shapes16):
    runs = []
    for on in (False, True):
        cfg = tiny_config(tmp_path / str(on), max_steps=1)
        cfg.objective.policy_mode = "eval"
        cfg.train.gradient_checkpointing = on
        policy = tiny_policy()
        runs.append((Trainer(cfg, policy, tiny_tokenizer(), shapes16).step(), policy.state_dict()))
    (m0, w0), (m1, w1) = runs
    assert m0["loss"] == pytest.approx(m1["loss"], rel=1e-6)
    assert all(torch.allclose(w0[k], w1[k], atol=1e-6) for k in w0)


def test_lora_trains_only_adapters_and_exports_merged_weights(tmp_path, shapes16):
    policy = apply_lora(tiny_policy(), LoraConfig(rank=2, alpha=4.0))
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    cfg = tiny_config(tmp_path, max_steps=2, save_steps=0)
    cfg.objective.policy_mode = "eval"
    Trainer(cfg, policy, tiny_tokenizer(), shapes16).train()
    after = policy.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(".lora_B." in k or ".lora_A." in k for k in changed)
    assert any(".lora_B." in k for k in changed)  # B starts at zero: moving it is what makes the adapter count
    # the checkpoint's model folder holds plain merged weights that load as a normal LlamaGen model
    exported = load_model(tmp_path / "run" / "checkpoints" / "step-000002" / "model")
    merged = merged_state_dict(policy)
    assert exported.state_dict().keys() == tiny_policy().state_dict().keys()
    for key, value in exported.state_dict().items():
        assert torch.equal(value, merged[key]), key
    wo = "layers.0.attention.wo"
    by_hand = after[f"{wo}.base_layer.weight"] + 2.0 * after[f"{wo}.lora_B.default.weight"] @ \
        after[f"{wo}.lora_A.default.weight"]
    assert torch.allclose(merged[f"{wo}.weight"], by_hand, atol=1e-7)
    policy.eval(), exported.eval()
    x = (torch.tensor([3]), torch.randint(0, 32, (1, 16), generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(policy(*x), exported(*x), atol=1e-5)


def test_lora_bad_targets_one_line():
    with pytest.raises(ValueError, match="match no Linear layer"):
        apply_lora(tiny_policy(), LoraConfig(rank=2, target_modules=["q_proj_typo"]))
    with pytest.raises(ValueError, match="rank must be >= 0"):
        LoraConfig(rank=-1)


def test_activation_checkpointing_on_janus(tmp_path):
    from t2i_tiny import tiny_janus_folder
    from vapi.models.janus import load_janus
    from vapi.models.protocols import PromptCondition

    policy = load_janus(tiny_janus_folder(tmp_path / "janus")).policy
    twin = apply_activation_checkpointing(copy.deepcopy(policy))
    cond = PromptCondition(torch.randint(8, 20, (2, 4), generator=torch.Generator().manual_seed(0)),
                           torch.ones(2, 4, dtype=torch.long))
    tokens = torch.randint(0, policy.vocab_size, (2, policy.num_image_tokens))
    grads = []
    for model in (policy, twin):
        model.eval()
        model(cond, tokens).logsumexp(-1).mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    scale = max(g.abs().max().item() for g in grads[0].values())
    assert max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0]) <= 1e-6 * scale
