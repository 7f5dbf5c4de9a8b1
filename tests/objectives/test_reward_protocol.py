"""The reward protocol: user `module:function` rewards, the classifier and CLIP terms, one-line errors."""
import sys
import types

import pytest
import torch

from t2i_tiny import tiny_clip_folder
from tiny import tiny_tokenizer
from vapi.models.classifier import Classifier, classifier_config
from vapi.models.weights_io import save_pretrained
from vapi.models.protocols import PromptCondition
from vapi.objectives.rewards import Reward, RewardConfig, score_tokens


def brightness(images, targets, condition):
    return images.mean(dim=(1, 2, 3))


@pytest.fixture
def user_module(monkeypatch):
    module = types.ModuleType("my_rewards")
    module.brightness = brightness
    module.bad_shape = lambda images, targets, condition: images.mean()
    monkeypatch.setitem(sys.modules, "my_rewards", module)
    return module


def test_user_function_composes_with_builtins(user_module):
    reward = Reward(RewardConfig(lpips=0.0, functions=["my_rewards:brightness"], function_weights=[2.0]))
    x, y = torch.rand(3, 3, 8, 8) * 2 - 1, torch.zeros(3, 3, 8, 8)
    total, terms = reward(x, y, torch.zeros(3, dtype=torch.long))
    assert set(terms) == {"mse", "brightness"}
    assert torch.allclose(total, -x.pow(2).flatten(1).mean(1) + 2 * x.mean(dim=(1, 2, 3)))


def test_user_function_errors_are_one_line(user_module):
    with pytest.raises(ValueError, match="module:function"):
        RewardConfig(functions=["my_rewards.brightness"])
    with pytest.raises(ValueError, match="one weight per function"):
        RewardConfig(functions=["my_rewards:brightness"], function_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="cannot import module"):
        Reward(RewardConfig(lpips=0.0, functions=["no_such_module_xyz:f"]))
    with pytest.raises(ValueError, match="no function 'nope'"):
        Reward(RewardConfig(lpips=0.0, functions=["my_rewards:nope"]))
    reward = Reward(RewardConfig(mse=0.0, lpips=0.0, functions=["my_rewards:bad_shape"]))
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        reward(torch.zeros(2, 3, 4, 4))


def test_target_terms_refuse_missing_targets():
    reward = Reward(RewardConfig(lpips=0.0))
    with pytest.raises(ValueError, match="reward.mse=0"):
        reward(torch.zeros(2, 3, 4, 4), None, None)
    assert RewardConfig(lpips=0.0, l1=1.0).target_terms() == ["mse", "l1"]


def test_classifier_probability_and_features_terms(tmp_path):
    torch.manual_seed(0)
    net = Classifier(classifier_config("convnet-tiny", num_classes=3)).eval()
    save_pretrained(net, tmp_path / "clf")
    cfg = RewardConfig(mse=0.0, lpips=0.0, classifier=1.0, classifier_path=str(tmp_path / "clf"),
                       features=0.5, features_path=str(tmp_path / "clf"))
    reward = Reward(cfg)
    x, y = torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(4, 3, 16, 16) * 2 - 1
    labels = torch.tensor([0, 1, 2, 1])
    _, terms = reward(x, y, labels)
    expected = net(x).softmax(-1)[torch.arange(4), labels]
    assert torch.allclose(terms["classifier"], expected, atol=1e-6)
    assert torch.allclose(terms["features"], -(net.features(x) - net.features(y)).pow(2).sum(1), atol=1e-5)
    with pytest.raises(ValueError, match="class-conditional"):
        reward.terms(x, y, PromptCondition(torch.zeros(4, 2, 3), torch.ones(4, 2, dtype=torch.long)))
    with pytest.raises(FileNotFoundError, match="vapi classifier folder"):
        Reward(RewardConfig(mse=0.0, lpips=0.0, classifier=1.0, classifier_path=str(tmp_path / "none")))


def test_clip_score_from_a_local_folder(tmp_path):
    folder = tiny_clip_folder(tmp_path / "clip")
    reward = Reward(RewardConfig(mse=0.0, lpips=0.0, clip=1.0, clip_path=folder), class_names=["disk", "square"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    _, by_class = reward(x, None, torch.tensor([0, 1]))
    cond = PromptCondition(torch.zeros(2, 2, 3), torch.ones(2, 2, dtype=torch.long),
                           texts=("a photo of a disk", "a photo of a square"))
    _, by_text = reward(x, None, cond)
    assert by_class["clip"].shape == (2,) and (by_class["clip"].abs() <= 1).all()
    assert torch.allclose(by_class["clip"], by_text["clip"], atol=1e-6)  # the template gives the same texts
    with pytest.raises(FileNotFoundError, match="reward.clip_path"):
        Reward(RewardConfig(mse=0.0, lpips=0.0, clip=1.0, clip_path=str(tmp_path / "missing")))


def test_codebook_cosine_refuses_tokenizers_without_latents():
    class Opaque(torch.nn.Module):
        vocab_size = 32

    with pytest.raises(ValueError, match="quantize.lookup and encode_latent"):
        Reward(RewardConfig(lpips=0.0, codebook_cosine=1.0), Opaque())


def test_score_tokens_passes_the_condition_per_chunk(user_module):
    seen = []
    user_module.spy = lambda images, targets, condition: seen.append(condition.clone()) or images.mean((1, 2, 3))
    vq = tiny_tokenizer()
    reward = Reward(RewardConfig(mse=0.0, lpips=0.0, functions=["my_rewards:spy"], chunk_size=2))
    labels = torch.arange(5)
    rewards, terms, _ = score_tokens(reward, vq, torch.randint(0, 32, (5, 16)), None, labels)
    assert torch.equal(torch.cat(seen), labels) and set(terms) == {"spy"} and rewards.shape == (5,)
