"""The trainer on tiny models: a step changes exactly the policy, a short run raises the reward, resume is exact."""
import json

import pytest
import torch

from tiny import tiny_config, tiny_policy, tiny_tokenizer, trained_tokenizer
from vapi.data.procedural import ProceduralShapes
from vapi.training.config import RunConfig
from vapi.training.trainer import Trainer


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_update_changes_exactly_the_policy(tmp_path, shapes16):
    policy, tokenizer = tiny_policy(), tiny_tokenizer()
    before_p, before_t = params(policy), params(tokenizer)
    trainer = Trainer(tiny_config(tmp_path, max_steps=1), policy, tokenizer, shapes16)
    metrics = trainer.step()
    for name, value in policy.state_dict().items():
        assert not torch.equal(value, before_p[name]), f"policy tensor {name} did not change"
    for name, value in tokenizer.state_dict().items():
        assert torch.equal(value, before_t[name]), f"tokenizer tensor {name} changed"
    assert all(not p.requires_grad for p in tokenizer.parameters())
    for key in ("reward", "reward_std", "loss", "policy_loss", "prior_ce", "ratio_mean", "clip_ratio", "grad_norm",
                "entropy", "rewards/mse/mean", "learning_rate", "seqs_per_sec", "step_time", "num_tokens",
                "frac_reward_zero_std"):
        assert key in metrics and torch.isfinite(torch.tensor(metrics[key])), key
    # TRL's conventions: per-term values are rewards (negated costs); tokens counted over the whole step
    assert metrics["rewards/mse/mean"] <= 0 and metrics["num_tokens"] == 4 * 4 * 16


def test_first_update_is_on_policy(tmp_path, shapes16):
    """Rollout and update in eval mode with one optimizer step: the ratio is exactly 1, nothing is clipped."""
    cfg = tiny_config(tmp_path, max_steps=1)
    cfg.objective.policy_mode = "eval"
    metrics = Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16).step()
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["clip_ratio"] == 0.0


def test_short_run_raises_reward(tmp_path):
    """Reward only (β = 0), on-policy, a tokenizer fitted for a few seconds: the mean reward must rise."""
    data = ProceduralShapes(8, image_size=16, seed=0)
    cfg = tiny_config(tmp_path, max_steps=40, per_device_batch_size=8, micro_batch_size=128, save_steps=0)
    cfg.objective.num_generations = 16
    cfg.objective.context_noise = 0.0
    cfg.objective.prior_weight = 0.0
    cfg.optim.learning_rate = 1e-2
    trainer = Trainer(cfg, tiny_policy(), trained_tokenizer(data), data)
    rewards = [trainer.step()["reward"] for _ in range(cfg.train.max_steps)]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.05 * abs(first), (first, last)


def test_resume_is_bit_exact(tmp_path, shapes16):
    cfg = tiny_config(tmp_path, max_steps=4, save_steps=2)
    cfg.objective.context_noise = 0.5
    full = tiny_policy()
    Trainer(cfg, full, tiny_tokenizer(), shapes16).train()

    cfg2 = tiny_config(tmp_path / "b", max_steps=4, save_steps=2)
    cfg2.objective.context_noise = 0.5
    cfg2.train.max_steps = 2
    Trainer(cfg2, tiny_policy(), tiny_tokenizer(), shapes16).train()  # "interrupted" after step 2
    cfg2.train.max_steps = 4
    resumed = tiny_policy(seed=123)  # different init: everything must come from the checkpoint
    trainer = Trainer(cfg2, resumed, tiny_tokenizer(), shapes16, resume=True)
    assert trainer.state.step == 2
    trainer.train()
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    lines_b = (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()
    timing = ("seqs_per_sec", "step_time")  # wall-clock speed differs
    strip = lambda ls: [{k: v for k, v in json.loads(line).items() if k not in timing} for line in ls]
    assert strip(lines) == strip(lines_b)


def test_resume_from_another_model_is_refused(tmp_path, shapes16):
    cfg = tiny_config(tmp_path, max_steps=1)
    Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16).train()
    with pytest.raises(ValueError, match="another model"):
        Trainer(cfg, tiny_policy(dim=64, n_head=4), tiny_tokenizer(), shapes16, resume=True)


def test_ce_control_runs(tmp_path, shapes16):
    cfg = tiny_config(tmp_path, max_steps=2)
    cfg.objective.name = "ce"
    policy = tiny_policy()
    before = params(policy)
    metrics = Trainer(cfg, policy, tiny_tokenizer(), shapes16).train()
    assert "prior_ce" in metrics and "reward" not in metrics
    assert not torch.equal(policy.output.weight, before["output.weight"])


def test_bad_inputs(tmp_path, shapes16):
    with pytest.raises(ValueError, match="num_generations must be >= 2"):
        cfg = RunConfig()
        cfg.objective.__class__(num_generations=1)
    cfg = tiny_config(tmp_path)
    cfg.train.micro_batch_size = 5
    with pytest.raises(ValueError, match="micro_batch_size to one of"):
        cfg.grad_accum_steps
    with pytest.raises(ValueError, match="vocabulary"):
        Trainer(tiny_config(tmp_path), tiny_policy(vocab=64), tiny_tokenizer(codebook=32), shapes16)
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(tiny_config(tmp_path, per_device_batch_size=128), tiny_policy(), tiny_tokenizer(), shapes16)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_ce_control_updates_in_vapis_mode(tmp_path, shapes16, mode):
    """The ce control runs its update in objective.policy_mode, as VA-π does (no train/eval confound)."""
    cfg = tiny_config(tmp_path, max_steps=1)
    cfg.objective.name, cfg.objective.policy_mode = "ce", mode
    policy = tiny_policy()
    seen = []
    policy.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    Trainer(cfg, policy, tiny_tokenizer(), shapes16).step()
    assert seen and all(t == (mode == "train") for t in seen)


def test_policy_weight_zero_keeps_data_and_changes_only_the_reward_term(tmp_path, shapes16):
    """VA-π with policy_weight 0 (the matched control) sees the same images and rollouts; its update differs."""
    runs = {}
    for w in (1.0, 0.0):
        cfg = tiny_config(tmp_path / str(w), max_steps=1)
        cfg.objective.policy_weight, cfg.objective.policy_mode = w, "eval"
        torch.manual_seed(0)
        policy = tiny_policy()
        runs[w] = (Trainer(cfg, policy, tiny_tokenizer(), shapes16).step(), params(policy))
    assert runs[1.0][0]["reward"] == runs[0.0][0]["reward"]  # same rollout batch
    assert any(not torch.equal(runs[1.0][1][k], runs[0.0][1][k]) for k in runs[1.0][1])
