"""Every method through the one trainer on tiny models: each changes exactly the parameters it owns, resumes
bit-exactly, and moves its own objective; bad options are one-line errors."""
import copy
import json

import pytest
import torch

from tiny import tiny_config, tiny_policy, tiny_tokenizer, trained_tokenizer
from vapi.config import ConfigError, load_config
from vapi.data.procedural import ProceduralShapes
from vapi.objectives.rollout import sample_from_logits
from vapi.training.config import RunConfig
from vapi.training.trainer import Trainer

METHODS = ["vapi", "ce", "ste", "tokenizer", "grpo"]


def method_config(tmp_path, name, **train):
    cfg = tiny_config(tmp_path, **train)
    cfg.objective.name = name
    cfg.grpo.num_generations = 4
    if name == "grpo":  # no real image: a target-free user reward
        cfg.reward.mse = 0.0
        cfg.reward.functions = ["method_rewards:redness"]
    return cfg


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", METHODS)
def test_each_method_changes_exactly_what_it_owns(name, tmp_path, shapes16, user_rewards):
    policy, tokenizer = tiny_policy(), tiny_tokenizer()
    before_p, before_t = snapshot(policy), snapshot(tokenizer)
    trainer = Trainer(method_config(tmp_path, name, max_steps=1), policy, tokenizer, shapes16)
    metrics = trainer.step()
    assert torch.isfinite(torch.tensor(metrics["loss"])) and "grad_norm" in metrics
    if name == "tokenizer":
        owned = {k for k in before_t if k.startswith(("decoder.", "post_quant_conv."))}
        assert trainer.model is tokenizer
        for k, v in tokenizer.state_dict().items():
            assert torch.equal(v, before_t[k]) != (k in owned), k
        assert all(torch.equal(v, before_p[k]) for k, v in policy.state_dict().items())
    else:
        assert trainer.model is policy
        for k, v in policy.state_dict().items():
            assert not torch.equal(v, before_p[k]), f"policy tensor {k} did not change"
        assert all(torch.equal(v, before_t[k]) for k, v in tokenizer.state_dict().items())
    if name == "grpo":
        assert "rewards/redness/mean" in metrics and "reward" in metrics and "kl" in metrics


@pytest.mark.parametrize("name", METHODS)
def test_every_method_resumes_bit_exactly(name, tmp_path, shapes16, user_rewards):
    full_policy, full_tok = tiny_policy(), tiny_tokenizer()
    Trainer(method_config(tmp_path / "a", name, max_steps=3, save_steps=2), full_policy, full_tok, shapes16).train()
    cfg = method_config(tmp_path / "b", name, max_steps=2, save_steps=2)
    Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16).train()  # "interrupted" after step 2
    cfg.train.max_steps = 3
    policy, tok = tiny_policy(seed=5), tiny_tokenizer(seed=5)  # different init: trained weights come from the ckpt
    if name in ("tokenizer", "grpo"):
        # tokenizer: the frozen generator is an input of the run, not part of its checkpoint; grpo: its KL reference
        # is the initial policy (model.gpt), loaded again on resume
        policy = tiny_policy()
    if name != "tokenizer":
        tok = tiny_tokenizer()
    trainer = Trainer(cfg, policy, tok, shapes16, resume=True)
    assert trainer.state.step == 2
    trainer.train()
    for got, want in ((policy, full_policy), (tok, full_tok)):
        for k, v in want.state_dict().items():
            assert torch.equal(v, got.state_dict()[k]), k
    timing = ("seqs_per_sec", "step_time")  # wall-clock speed differs
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k not in timing}
                       for line in p.read_text().splitlines()]
    assert strip(tmp_path / "a" / "run" / "metrics.jsonl") == strip(tmp_path / "b" / "run" / "metrics.jsonl")


def _tf_sample_mse(policy, tokenizer, images, labels):
    """MSE between real images and the decode of one fixed draw from the generator's teacher-forced distribution."""
    with torch.no_grad():
        logits = policy.eval().teacher_forced_logits(labels, tokenizer.encode(images))
        tokens, _ = sample_from_logits(logits, 1, generator=torch.Generator().manual_seed(0))
        return (tokenizer.decode(tokens) - images).pow(2).mean().item()


@pytest.fixture(scope="module")
def fitted():
    """8 procedural images and a tokenizer fitted to them once (decodes depend on the codes)."""
    data = ProceduralShapes(8, image_size=16, seed=0)
    return data, trained_tokenizer(data)


def test_tokenizer_method_lowers_the_error_of_teacher_forced_samples(tmp_path, fitted):
    data, fitted_tokenizer = fitted
    images, labels = torch.stack([data[i][0] for i in range(8)]), torch.tensor([data[i][1] for i in range(8)])
    policy, tokenizer = tiny_policy(), copy.deepcopy(fitted_tokenizer)
    before = _tf_sample_mse(policy, tokenizer, images, labels)
    cfg = method_config(tmp_path, "tokenizer", max_steps=12, per_device_batch_size=8, save_steps=0)
    cfg.optim.learning_rate = 1e-2
    Trainer(cfg, policy, tokenizer, data).train()
    after = _tf_sample_mse(policy, tokenizer, images, labels)
    print(f"tokenizer method: MSE of decoded teacher-forced samples {before:.4f} -> {after:.4f}")
    assert after < 0.9 * before, (before, after)


def test_grpo_raises_a_reward_that_favours_red(tmp_path, user_rewards, fitted):
    data, fitted_tokenizer = fitted
    cfg = method_config(tmp_path, "grpo", max_steps=20, per_device_batch_size=8, micro_batch_size=64, save_steps=0)
    cfg.grpo.num_generations = 8
    cfg.grpo.cfg_scale = 1.0
    cfg.grpo.beta = 0.0
    cfg.optim.learning_rate = 3e-2
    trainer = Trainer(cfg, tiny_policy(), copy.deepcopy(fitted_tokenizer), data)
    rewards = [trainer.step()["reward"] for _ in range(cfg.train.max_steps)]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    print(f"grpo: redness reward, mean of the first 5 steps {first:.4f} -> last 5 {last:.4f}")
    assert last > first + 0.03, rewards


@pytest.mark.parametrize("override, message", [
    ("objective.name=dpo", "objective.name must be one of"),
    ("ste.tau=0", "ste.tau"),
    ("grpo.logprobs=both", "grpo.logprobs"),
    ("grpo.num_generations=1", "grpo.num_generations"),
    ("tokenizer.temperature=-1", "tokenizer.temperature"),
    ("reward.functions=[nocolon]", "module:function"),
])
def test_bad_method_options_are_one_line_errors(override, message):
    with pytest.raises((ValueError, ConfigError), match=message) as err:
        load_config(RunConfig, None, [override])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, fix", [("grpo", "reward.mse=0"), ("ste", "reward.mse"),
                                       ("tokenizer", "reward.mse")])
def test_method_reward_mismatch_is_one_line(name, fix, tmp_path, shapes16, user_rewards):
    cfg = method_config(tmp_path, name)
    if name == "grpo":
        cfg.reward.mse = 1.0  # a real-image term, which free-running samples cannot have
    else:
        cfg.reward.mse = 0.0
    with pytest.raises(ValueError, match=fix) as err:
        Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16)
    assert "\n" not in str(err.value)


def test_tokenizer_method_refuses_generator_only_options(tmp_path, shapes16):
    cfg = method_config(tmp_path, "tokenizer")
    cfg.train.gradient_checkpointing = True
    with pytest.raises(ValueError, match="use ddp and no checkpointing"):
        Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16)


def test_user_reward_is_loaded_and_logged(tmp_path, shapes16, user_rewards):
    cfg = method_config(tmp_path, "vapi", max_steps=1)
    cfg.reward.functions = ["method_rewards:redness"]
    cfg.reward.function_weights = [0.5]
    Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16).train()
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"rewards/mse/mean", "rewards/redness/mean"} <= set(row)


@pytest.mark.parametrize("logprobs", ["conditional", "guided"])
def test_grpo_first_update_is_on_policy(logprobs, tmp_path, shapes16, user_rewards):
    """All GRPO passes run in eval mode, so before the first optimizer step the ratio is exactly 1."""
    cfg = method_config(tmp_path, "grpo", max_steps=1)
    cfg.grpo.logprobs = logprobs
    metrics = Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16).step()
    assert metrics["ratio_mean"] == pytest.approx(1.0, abs=1e-6) and metrics["clip_ratio"] == 0.0
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ["ste", "tokenizer", "grpo"])
def test_baseline_presets_validate(name):
    cfg = load_config(RunConfig, f"{name}_llamagen_c2i_xxl_384")
    assert cfg.objective.name == name and cfg.model.gpt_model == "GPT-XXL" and cfg.model.image_size == 384
    assert cfg.grad_accum_steps >= 1
    if name == "grpo":
        assert cfg.reward.target_terms() == [] and cfg.grpo.cfg_scale == 2.0 and cfg.grpo.beta == 0.1


def test_flat_names_set_the_selected_methods_option():
    cfg = load_config(RunConfig, None, ["objective.name=grpo", "num_generations=4", "reward.mse=0"])
    assert cfg.grpo.num_generations == 4 and cfg.objective.num_generations == 8
    assert load_config(RunConfig, None, ["num_generations=4"]).objective.num_generations == 4


@pytest.mark.parametrize("name", ["ste", "grpo", "tokenizer"])
def test_methods_that_call_the_generator_outside_forward_refuse_fsdp(name, tmp_path, user_rewards):
    from contextlib import nullcontext

    from vapi.methods import MethodContext, build_method

    cfg = method_config(tmp_path, name)
    cfg.train.parallel = "fsdp"
    ctx = MethodContext(torch.device("cpu"), nullcontext, torch.Generator())
    with pytest.raises(ValueError, match="train.parallel=ddp|use ddp") as err:
        build_method(cfg, tiny_policy(), tiny_tokenizer(), ctx)
    assert "\n" not in str(err.value)


def test_twice_mode_logs_the_loss_it_optimises(tmp_path, shapes16):
    """policy_mode=twice: the ratio in eval mode, the prior CE in its own train-mode pass; the logged loss is the
    optimised total (policy + β · train-mode CE) and prior_ce that train-mode CE."""
    cfg = method_config(tmp_path, "vapi", max_steps=1)
    cfg.objective.policy_mode, cfg.objective.prior_weight = "twice", 0.5
    m = Trainer(cfg, tiny_policy(), tiny_tokenizer(), shapes16).step()
    assert m["prior_ce"] > 1.0
    assert m["loss"] == pytest.approx(m["policy_loss"] + 0.5 * m["prior_ce"], rel=1e-5)
