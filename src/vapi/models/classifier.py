"""Small CNN image classifiers used as evaluation feature networks (a CPU stand-in for Inception).

Two architectures share one config and one feature contract, so they sit in one small file:
- `arch="convnet"`: VGG-style plain stages (conv-BN-ReLU x blocks, then 2x2 max-pool);
- `arch="resnet"`: pre-activation residual stages (BN-ReLU-conv, strided conv to downsample, 1x1 shortcut).
Using both gives two independent views of sample quality (a metric that only one of them moves is suspect).

`features(x) -> [N, sum(widths)]` concatenates the global-average-pooled output of *every* stage (with the default
three stages: an early, a middle and the last one), times the buffer `feature_scale`. A Fréchet distance on
last-stage features of a classifier trained to 100% accuracy sees mostly class identity; the early stages keep
texture, colour and pixel statistics, so the same distance also reacts to tokenizer artifacts (noise, blur, colour
shifts). Unscaled, the last stage's larger activations dominate a distance on the concatenation, so training
calibrates `feature_scale` to give every stage unit total variance on real data (folding the inverse into `head`,
logits unchanged). `head` is a Linear on the scaled features, so `ClassifierExtractor(model)` yields features and
logits. Inputs are images in [-1, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = ("convnet", "resnet")


@dataclass
class ClassifierConfig:
    arch: str = "convnet"  # convnet | resnet
    num_classes: int = 10
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # channels of each stage
    blocks: int = 2  # conv layers (convnet) or residual blocks (resnet) per stage

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"classifier arch must be one of {ARCHS}, got {self.arch!r}")
        if not self.widths or min(self.widths) < 1 or self.blocks < 1 or self.num_classes < 1:
            raise ValueError(f"need non-empty positive widths, blocks >= 1, num_classes >= 1; got {self}")

    @property
    def feature_dim(self) -> int:
        return sum(self.widths)

    def to_dict(self) -> dict:
        return asdict(self)


CLASSIFIER_PRESETS: dict[str, dict] = {
    "convnet-s": dict(arch="convnet", widths=[32, 64, 128], blocks=2),
    "resnet-s": dict(arch="resnet", widths=[32, 64, 128], blocks=1),
    "convnet-tiny": dict(arch="convnet", widths=[8, 16, 16], blocks=1),
}


def classifier_config(preset: str, **overrides) -> ClassifierConfig:
    if preset not in CLASSIFIER_PRESETS:
        raise ValueError(f"unknown classifier preset {preset!r}; choose one of {', '.join(CLASSIFIER_PRESETS)}")
    return ClassifierConfig(**{**CLASSIFIER_PRESETS[preset], **overrides})


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x))
        skip = self.shortcut(h) if self.shortcut is not None else x
        return skip + self.conv2(F.relu(self.bn2(self.conv1(h))))


class Classifier(nn.Module):
    """images [N, 3, H, W] in [-1, 1] → logits [N, num_classes]; `features` gives the multi-scale vector."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.config = cfg
        w = cfg.widths
        self.stages = nn.ModuleList()
        if cfg.arch == "convnet":
            cin = 3
            for i, cout in enumerate(w):
                layers = [nn.MaxPool2d(2)] if i > 0 else []  # the first stage keeps full resolution
                for _ in range(cfg.blocks):
                    layers.append(_conv_bn_relu(cin, cout))
                    cin = cout
                self.stages.append(nn.Sequential(*layers))
        else:
            self.stem = nn.Conv2d(3, w[0], 3, padding=1, bias=False)
            cin = w[0]
            for i, cout in enumerate(w):
                blocks = [PreActBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1)
                          for j in range(cfg.blocks)]
                cin = cout
                self.stages.append(nn.Sequential(*blocks))
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)
        self.register_buffer("feature_scale", torch.ones(cfg.feature_dim))  # per-dim multiplier of features()

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output: [N, widths[i], H / 2^i, W / 2^i]."""
        h = self.stem(x) if hasattr(self, "stem") else x
        outs = []
        for stage in self.stages:
            h = stage(h)
            outs.append(h)
        return outs

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 3, H, W] → [N, sum(widths)]: global-average-pooled stage outputs, early to last, unscaled."""
        return torch.cat([h.mean(dim=(2, 3)) for h in self.stage_outputs(x)], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pooled(x) * self.feature_scale  # [N, sum(widths)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # [N, num_classes]
