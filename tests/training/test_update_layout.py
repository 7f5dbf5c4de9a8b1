"""The shared-context update (one forward per image) equals the per-sample update (one forward per sequence) whenever
the numerator is dropout-free: same loss, stats and gradients, on LlamaGen C2I, LlamaGen T2I and Janus."""
import copy

import pytest
import torch

from t2i_tiny import CAPTION_TOKENS, T5_DIM, tiny_janus_folder, tiny_t2i_policy
from tiny import tiny_config, tiny_policy, tiny_tokenizer
from vapi.models.protocols import PromptCondition
from vapi.objectives import group_advantages, teacher_forced_rollout
from vapi.methods.vapi import VaPiWork, uses_shared_update
from vapi.training.trainer import Trainer


# how far the numerator is moved off the rollout's weights
SHIFT = {"c2i": 0.05, "t2i": 0.05, "janus": 0.02}


def _c2i(B):
    return tiny_policy(), torch.arange(B) % 10


def _t2i(B):
    g = torch.Generator().manual_seed(3)
    mask = torch.ones(B, CAPTION_TOKENS, dtype=torch.long)
    mask[0, :3] = 0  # left padding on one caption
    return tiny_t2i_policy(), PromptCondition(torch.randn(B, CAPTION_TOKENS, T5_DIM, generator=g), mask)


def _janus(B, root):
    from vapi.models.janus import load_janus
    bundle = load_janus(tiny_janus_folder(root / "janus"))
    torch.manual_seed(0)
    with torch.no_grad():  # the folder's std-0.5 init (chosen for varied greedy tokens) is badly conditioned in fp32
        for p in bundle.policy.parameters():
            if p.requires_grad and p.ndim == 2:
                p.normal_(0.0, 0.1)
    ids = torch.randint(8, 20, (B, 5), generator=torch.Generator().manual_seed(4))
    ids[:, 0] = bundle.policy.bos_id
    mask = torch.ones_like(ids)
    ids[1, :2], mask[1, :2] = bundle.policy.pad_id, 0
    return bundle.policy, PromptCondition(ids, mask)


def _run_update(cfg, policy, shared, rollout, advantages, shapes, scale):
    cfg.objective.update_layout = "shared" if shared else "per_sample"
    trainer = Trainer(cfg, policy, tiny_tokenizer(codebook=policy.vocab_size), shapes)
    assert trainer.method.shared_update is shared
    # move the policy off the rollout's (and the KL reference's) weights: ratio, clipping and KL are exercised too
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                noise = torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()))
                p.add_(scale * noise)
    metrics = trainer._update(VaPiWork(rollout, advantages, shared))
    grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}
    return metrics, grads


@pytest.mark.parametrize("model", ["c2i", "t2i", "janus"])
@pytest.mark.parametrize("micro_batch", [8, 2])  # 8: two whole groups per micro-batch; 2: half a group
def test_shared_equals_per_sample_in_eval_mode(model, micro_batch, tmp_path, shapes16):
    B, G = 4, 4
    policy, cond = {"c2i": lambda: _c2i(B), "t2i": lambda: _t2i(B), "janus": lambda: _janus(B, tmp_path)}[model]()
    cfg = tiny_config(tmp_path, per_device_batch_size=B, micro_batch_size=micro_batch)
    cfg.objective.policy_mode = "eval"
    cfg.objective.token_dropout = 0.3
    cfg.objective.prior_weight = 0.5
    cfg.objective.beta = 0.1  # the optional KL to the frozen reference rides along
    cfg.optim.max_grad_norm = 0.0
    assert cfg.grad_accum_steps == B * G // micro_batch > 1
    gt = torch.randint(0, policy.vocab_size, (B, policy.num_image_tokens), generator=torch.Generator().manual_seed(1))
    policy.eval()
    rollout = teacher_forced_rollout(lambda c, x: policy(c, x), cond, gt, num_generations=G,
                                     vocab_size=policy.vocab_size, context_noise=0.3,
                                     generator=torch.Generator().manual_seed(2))
    advantages = group_advantages(torch.randn(B * G, generator=torch.Generator().manual_seed(5)), G)
    shared_metrics, shared_grads = _run_update(copy.deepcopy(cfg), copy.deepcopy(policy), True, rollout,
                                               advantages, shapes16, SHIFT[model])
    per_metrics, per_grads = _run_update(copy.deepcopy(cfg), copy.deepcopy(policy), False, rollout, advantages,
                                         shapes16, SHIFT[model])
    assert shared_metrics.keys() == per_metrics.keys()
    for key in shared_metrics:
        assert shared_metrics[key] == pytest.approx(per_metrics[key], rel=1e-5, abs=1e-6), key
    assert per_metrics["clip_ratio"] > 0 and per_metrics["kl"] > 0
    assert shared_grads.keys() == per_grads.keys() and shared_grads
    scale = max(g.abs().max().item() for g in per_grads.values())
    worst = max((shared_grads[n] - per_grads[n]).abs().max().item() for n in per_grads)
    assert worst <= 1e-6 * scale, (worst, scale)


def test_auto_layout_follows_the_numerators_randomness():
    dropout, no_dropout = tiny_policy(), tiny_policy(token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0,
                                                      class_dropout_prob=0.0)
    assert uses_shared_update("auto", "eval", dropout) and uses_shared_update("auto", "twice", dropout)
    assert not uses_shared_update("auto", "train", dropout)
    assert uses_shared_update("auto", "train", no_dropout)
    assert uses_shared_update("shared", "train", dropout) and not uses_shared_update("per_sample", "eval", dropout)


def test_shared_layout_in_train_mode_still_trains(tmp_path, shapes16):
    """The documented different estimator (one dropout mask per image) runs and changes every policy tensor."""
    cfg = tiny_config(tmp_path, max_steps=1)
    cfg.objective.update_layout = "shared"
    policy = tiny_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    metrics = Trainer(cfg, policy, tiny_tokenizer(), shapes16).step()
    assert all(not torch.equal(v, before[k]) for k, v in policy.state_dict().items())
    assert torch.isfinite(torch.tensor(metrics["loss"]))


def test_shared_layout_with_several_optimizer_steps_matches_per_sample(tmp_path, shapes16):
    """steps_per_generation and num_iterations (4 optimizer steps per rollout) follow the same path in both layouts."""
    runs = {}
    for layout in ("shared", "per_sample"):
        cfg = tiny_config(tmp_path / layout, max_steps=2, per_device_batch_size=4, micro_batch_size=4)
        cfg.objective.policy_mode, cfg.objective.update_layout = "eval", layout
        cfg.train.steps_per_generation, cfg.train.num_iterations = 2, 2
        policy = tiny_policy()
        runs[layout] = (Trainer(cfg, policy, tiny_tokenizer(), shapes16).train(), policy.state_dict())
    (m_sh, w_sh), (m_ps, w_ps) = runs["shared"], runs["per_sample"]
    for key in ("loss", "policy_loss", "prior_ce", "ratio_mean", "clip_ratio", "reward"):
        assert m_sh[key] == pytest.approx(m_ps[key], rel=1e-4, abs=1e-6), key
    assert all(torch.allclose(w_sh[k], w_ps[k], atol=1e-5) for k in w_sh)


def test_resume_is_bit_exact_in_the_shared_layout(tmp_path, shapes16):
    def config(root, steps):
        cfg = tiny_config(root, max_steps=steps, save_steps=2)
        cfg.objective.policy_mode, cfg.objective.context_noise, cfg.objective.token_dropout = "eval", 0.5, 0.2
        return cfg

    full = tiny_policy()
    Trainer(config(tmp_path / "a", 4), full, tiny_tokenizer(), shapes16).train()
    Trainer(config(tmp_path / "b", 2), tiny_policy(), tiny_tokenizer(), shapes16).train()
    resumed = tiny_policy(seed=123)
    trainer = Trainer(config(tmp_path / "b", 4), resumed, tiny_tokenizer(), shapes16, resume=True)
    assert trainer.method.shared_update and trainer.state.step == 2
    trainer.train()
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
