"""Reward terms: hand-checked pixel terms, LPIPS offline loading and its one clear error, PatchGAN and codebook
cosine terms, chunked scoring equal to one pass."""
import pytest
import torch
import torchvision

from tiny import tiny_tokenizer
from vapi.objectives.rewards import (PatchDiscriminator, Reward, RewardConfig, build_lpips, load_discriminator,
                                     score_tokens)


def test_pixel_terms_by_hand():
    pred = torch.zeros(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    target[1] = 0.5
    reward = Reward(RewardConfig(mse=1.0, l1=2.0, lpips=0.0))
    terms = reward.terms(pred, target)
    assert torch.allclose(terms["mse"], torch.tensor([0.0, -0.25]))  # terms are rewards: higher is better
    assert torch.allclose(terms["l1"], torch.tensor([0.0, -0.5]))
    assert torch.allclose(reward.combine(terms), torch.tensor([0.0, -(0.25 + 2 * 0.5)]))


def test_lpips_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth") as err:
        build_lpips("vgg")
    assert str(tmp_path) in str(err.value) and "reward.lpips_weights" in str(err.value)


def test_lpips_backbone_from_cache_and_explicit_path(tmp_path, monkeypatch):
    torch.manual_seed(0)
    weights = torchvision.models.alexnet().state_dict()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(weights, tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    torch.save(weights, tmp_path / "explicit.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached, explicit = build_lpips("alex"), build_lpips("alex", weights=str(tmp_path / "explicit.pth"))
    assert torch.equal(cached.net.slice1[0].weight, weights["features.0.weight"])
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(cached(x, y), explicit(x, y))
    assert (cached(x, x).flatten() < 1e-6).all() and (cached(x, y).flatten() > 0).all()
    with pytest.raises(ValueError, match="lacks"):
        build_lpips("vgg", weights=str(tmp_path / "explicit.pth"))  # AlexNet weights for a VGG backbone


def test_discriminator_term_loads_llamagen_layout(tmp_path):
    torch.manual_seed(0)
    disc = PatchDiscriminator(ndf=8, n_layers=2).eval()
    torch.save({"discriminator": disc.state_dict(), "steps": 10}, tmp_path / "vq_train.pt")
    loaded = load_discriminator(str(tmp_path / "vq_train.pt"))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert torch.allclose(loaded(x), disc(x))
    reward = Reward(RewardConfig(mse=0.0, lpips=0.0, discriminator=0.5,
                                 discriminator_path=str(tmp_path / "vq_train.pt")))
    terms = reward.terms(x, x)
    assert torch.allclose(terms["discriminator"], disc(x).flatten(1).mean(1))
    with pytest.raises(ValueError, match="discriminator_path"):
        RewardConfig(discriminator=1.0)


def test_chunked_scoring_with_codebook_cosine_equals_one_pass():
    vq = tiny_tokenizer()
    tokens = torch.randint(0, 32, (5, 16))
    target = torch.rand(5, 3, 16, 16) * 2 - 1
    target_latent = vq.encode_latent(target)
    one = Reward(RewardConfig(lpips=0.0, codebook_cosine=0.3, chunk_size=5), vq)
    chunked = Reward(RewardConfig(lpips=0.0, codebook_cosine=0.3, chunk_size=2), vq)
    r1, t1, _ = score_tokens(one, vq, tokens, target)
    r2, t2, images = score_tokens(chunked, vq, tokens, target, keep_images=3)
    assert torch.allclose(r1, r2, atol=1e-6) and set(t1) == {"mse", "codebook_cosine"}
    assert images.shape == (3, 3, 16, 16)
    side_latent = vq.quantize.lookup(tokens, (4, 4))
    expected = torch.nn.functional.cosine_similarity(side_latent.flatten(1), target_latent.flatten(1), dim=1)
    assert torch.allclose(t1["codebook_cosine"], expected, atol=1e-6)
