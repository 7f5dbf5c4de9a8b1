"""The frozen networks behind reward terms, loaded offline: LPIPS, LlamaGen's PatchGAN, a vapi classifier, CLIP.

Nothing here downloads. LPIPS's backbone (torchvision VGG16/AlexNet) is read from torchvision's cache
(`$TORCH_HOME/hub/checkpoints/`, filled by `vapi download lpips`) or an explicit file; the PatchGAN from a LlamaGen VQ
training checkpoint; a classifier from a vapi classifier folder (`vapi pretrain features`); CLIP from a local
transformers folder (`CLIPModel.save_pretrained` + its tokenizer). A missing file is one error that says what to place where.
`lpips_random_backbone` exists for plumbing tests only, never for reported numbers.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth",
                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}
# OpenAI CLIP's image normalisation, used when the folder has no preprocessor_config.json.
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


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


def load_classifier(folder: str) -> nn.Module:
    """A vapi classifier folder (`vapi pretrain features` output) → frozen `Classifier` (logits, `features(x)`)."""
    from vapi.models.weights_io import load_pretrained
    from vapi.models.classifier import Classifier

    if not Path(folder, "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a vapi classifier folder (no config.json): train one with "
                                "`vapi pretrain features` or point the reward at its output folder")
    model = load_pretrained(folder)
    if not isinstance(model, Classifier):
        raise ValueError(f"{folder} holds a {type(model).__name__}, not a vapi classifier")
    return model.eval().requires_grad_(False)


def resize_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """images [N, 3, H, W] → [N, 3, size, size] (bilinear, antialiased when shrinking); unchanged if already so."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class ClipScorer(nn.Module):
    """CLIP image-text cosine similarity, as AR-GRPO's clip-score reward, from a local transformers folder.

    images [N, 3, H, W] in [-1, 1] are resized to CLIP's input size and normalised with the folder's image mean/std
    in torch (differentiable, no PIL round trip); texts are tokenised with the folder's tokenizer.
    """

    def __init__(self, folder: str):
        super().__init__()
        import json

        from transformers import AutoTokenizer, CLIPModel

        path = Path(folder)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"the CLIP reward reads a local transformers CLIP folder and cannot download one here: place "
                f"`CLIPModel.save_pretrained` output plus its tokenizer (e.g. openai/clip-vit-base-patch32) at "
                f"{path} or set reward.clip_path=FOLDER")
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        mean, std = CLIP_MEAN, CLIP_STD
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            conf = json.loads(pre.read_text())
            mean, std = conf.get("image_mean", mean), conf.get("image_std", std)
        self.size = self.model.config.vision_config.image_size
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """→ cosine similarity [N] of each image with its text."""
        x = (resize_to(images.float(), self.size) + 1) / 2  # [N, 3, S, S] in [0, 1]
        x = (x - self.mean) / self.std
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.model.config.text_config.max_position_embeddings, return_tensors="pt")
        enc = {k: v.to(images.device) for k, v in enc.items()}
        img = F.normalize(_projected(self.model.get_image_features(pixel_values=x)), dim=-1)  # [N, D]
        txt = F.normalize(_projected(self.model.get_text_features(**enc)), dim=-1)  # [N, D]
        return (img * txt).sum(-1)


def _projected(out) -> torch.Tensor:
    """transformers < 5 returns the projected embeddings, >= 5 an output whose pooler_output holds them."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output
