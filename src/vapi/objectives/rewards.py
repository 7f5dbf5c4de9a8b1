"""Rewards of VA-π: how well a sampled token sequence, decoded by the frozen tokenizer, reconstructs the real image.

R = -(mse·MSE + l1·L1 + lpips·LPIPS + discriminator·(−D(x̂)) + codebook_cosine·(1 − cos(z_q, z)) + features·‖φ(x̂) − φ(x)‖²)
with each weight 0 = off. Every term is returned per sample (as a loss, lower is better) so it can be logged on its
own. Decoding and scoring run in chunks to bound memory. The reference runs use MSE 1 + LPIPS 1 (VGG for
LlamaGen, AlexNet for Janus).

LPIPS comes from the `lpips` package; its backbone (torchvision's VGG16/AlexNet) is read from torchvision's cache
(`$TORCH_HOME/hub/checkpoints/`, filled by `vapi download lpips`) or from `lpips_weights`, never downloaded during a
run; without either, one error names the file, the cache path and the URL. `lpips_random_backbone` exists for plumbing tests only, never for reported numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vapi.config import helpf

BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth",
                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}


@dataclass
class RewardConfig:
    mse: float = helpf(1.0, "weight of the pixel MSE term")
    l1: float = helpf(0.0, "weight of the pixel L1 term")
    lpips: float = helpf(1.0, "weight of the LPIPS term")
    lpips_net: str = helpf("vgg", "LPIPS backbone: vgg (LlamaGen runs) | alex (Janus runs) | squeeze")
    lpips_weights: str = helpf("", "path to the torchvision backbone weights (default: torchvision's cache)")
    lpips_random_backbone: bool = helpf(False, "TEST ONLY: random LPIPS backbone, never for reported numbers")
    discriminator: float = helpf(0.0, "weight of the PatchGAN realism term (needs discriminator_path)")
    discriminator_path: str = helpf("", "LlamaGen VQ training checkpoint (key 'discriminator') or a bare state dict")
    codebook_cosine: float = helpf(0.0, "weight of 1 - cos(sampled codebook latent, real pre-quant latent)")
    features: float = helpf(0.0, "weight of the squared feature distance of a vapi feature net (features_path)")
    features_path: str = helpf("", "vapi feature-net folder used by the `features` term")
    chunk_size: int = helpf(16, "images decoded and scored per chunk (bounds memory)")

    def __post_init__(self):
        for name in ("mse", "l1", "lpips", "discriminator", "codebook_cosine", "features"):
            if getattr(self, name) < 0:
                raise ValueError(f"reward weight {name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.lpips_net not in BACKBONE_FILES:
            raise ValueError(f"lpips_net must be one of {sorted(BACKBONE_FILES)}, got {self.lpips_net!r}")
        if self.discriminator > 0 and not self.discriminator_path:
            raise ValueError("reward.discriminator > 0 needs reward.discriminator_path")
        if self.features > 0 and not self.features_path:
            raise ValueError("reward.features > 0 needs reward.features_path")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    @property
    def any_term(self) -> bool:
        return any(getattr(self, n) > 0 for n in ("mse", "l1", "lpips", "discriminator", "codebook_cosine", "features"))


def _state_dict_file(path) -> dict:
    from vapi.models.state_dict_io import load_torch_file

    obj = load_torch_file(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def build_lpips(net: str = "vgg", weights: str = "", random_backbone: bool = False) -> nn.Module:
    """LPIPS with its linear heads (shipped in the package) and an offline-loaded backbone; frozen, eval mode."""
    import lpips

    if random_backbone:
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    else:
        path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]
        if not path.is_file():
            from vapi.weights import missing_message

            raise FileNotFoundError(f"LPIPS-{net} needs torchvision's backbone: "
                                    + missing_message(f"lpips-{net}", path, "reward.lpips_weights"))
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        _load_backbone(model.net, _state_dict_file(path))
    return model.eval().requires_grad_(False)


def _load_backbone(net: nn.Module, state: dict) -> None:
    """Copy torchvision `features.<i>.*` weights into lpips' slice modules (named by the same index i)."""
    own = {}
    for slice_name, block in net.named_children():
        for idx, _ in block.named_children():
            own[idx] = slice_name
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] in own:
            mapped[f"{own[parts[1]]}.{parts[1]}.{'.'.join(parts[2:])}"] = value
    missing = set(net.state_dict()) - set(mapped)
    if missing:
        raise ValueError(f"LPIPS backbone file lacks {len(missing)} tensors (e.g. {sorted(missing)[0]}): "
                         "is it the right torchvision network?")
    net.load_state_dict(mapped, strict=True)


class PatchDiscriminator(nn.Module):
    """LlamaGen's PatchGAN (`NLayerDiscriminator`, BatchNorm variant); key names `main.<i>.*` as in its checkpoints."""

    def __init__(self, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        seq = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2 if n < n_layers else 1, 1, bias=False),
                    nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.main = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def load_discriminator(path: str) -> PatchDiscriminator:
    ckpt = _state_dict_file(path)
    state = ckpt.get("discriminator", ckpt.get("model", ckpt))
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} holds no discriminator state dict (looked for 'discriminator', 'model' or a "
                         "bare state dict)")
    convs = sorted({int(k.split(".")[1]) for k in state if k.startswith("main.") and k.endswith(".weight")
                    and state[k].ndim == 4})
    if not convs:
        raise ValueError(f"{path} holds no PatchGAN discriminator weights (expected keys main.<i>.weight)")
    model = PatchDiscriminator(ndf=state[f"main.{convs[0]}.weight"].shape[0], n_layers=len(convs) - 2)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


class Reward(nn.Module):
    """Scores decoded samples against their real images. Frozen; call under torch.no_grad()."""

    def __init__(self, cfg: RewardConfig, feature_net: Callable | None = None):
        super().__init__()
        self.cfg = cfg
        self.lpips = build_lpips(cfg.lpips_net, cfg.lpips_weights, cfg.lpips_random_backbone) if cfg.lpips else None
        self.disc = load_discriminator(cfg.discriminator_path) if cfg.discriminator else None
        self.feature_net = feature_net
        if cfg.features and feature_net is None:
            raise ValueError("reward.features > 0 needs a feature network")

    def terms(self, pred: torch.Tensor, target: torch.Tensor, pred_latent: torch.Tensor | None = None,
              target_latent: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-sample losses (lower is better), each [N], for the terms whose weight is > 0."""
        cfg, out = self.cfg, {}
        if cfg.mse:
            out["mse"] = (pred - target).pow(2).flatten(1).mean(1)
        if cfg.l1:
            out["l1"] = (pred - target).abs().flatten(1).mean(1)
        if self.lpips is not None:
            out["lpips"] = self.lpips(pred, target).flatten(1).mean(1)
        if self.disc is not None:
            out["discriminator"] = -self.disc(pred).flatten(1).mean(1)
        if cfg.codebook_cosine:
            out["codebook_cosine"] = 1 - F.cosine_similarity(pred_latent.flatten(1), target_latent.flatten(1), dim=1)
        if cfg.features:
            out["features"] = (self.feature_net(pred) - self.feature_net(target)).pow(2).flatten(1).sum(1)
        return out

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return -sum(getattr(self.cfg, name) * value for name, value in terms.items())


@torch.no_grad()
def score_tokens(reward: Reward, tokenizer, tokens: torch.Tensor, target: torch.Tensor,
                 target_latent: torch.Tensor | None = None, keep_images: int = 0):
    """Decode sampled tokens [N, T] in chunks and score them against `target` [N, 3, H, W].

    Returns (rewards [N], terms {name: [N]}, the first `keep_images` decoded images for logging).
    """
    chunk = reward.cfg.chunk_size
    rewards, terms, kept = [], {}, []
    for s in range(0, tokens.shape[0], chunk):
        t = tokens[s:s + chunk]
        pred = tokenizer.decode(t)  # [n, 3, H, W]
        pred_latent = None
        if reward.cfg.codebook_cosine:
            side = int(round(t.shape[1] ** 0.5))
            pred_latent = tokenizer.quantize.lookup(t, (side, side))
        part = reward.terms(pred, target[s:s + chunk], pred_latent,
                            None if target_latent is None else target_latent[s:s + chunk])
        rewards.append(reward.combine(part))
        for k, v in part.items():
            terms.setdefault(k, []).append(v)
        if len(kept) * chunk < keep_images:
            kept.append(pred)
    images = torch.cat(kept)[:keep_images] if kept else None
    return torch.cat(rewards), {k: torch.cat(v) for k, v in terms.items()}, images
