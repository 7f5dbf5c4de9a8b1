"""Rewards as one protocol: named, weighted terms of decoded images, composed into R = Σ weight · term.

A reward term is a callable `(images [N, 3, H, W] in [-1, 1], targets [N, 3, H, W] or None, condition) → [N]`,
higher is better, with a `name` and a `weight` (0 = off). Every term is logged on its own as `rewards/<name>/mean`.
Built-in terms (each off at weight 0):

  mse, l1            −mean (x̂ − x)², −mean |x̂ − x|                       (need the real image)
  lpips              −LPIPS(x̂, x); VGG for LlamaGen, AlexNet for Janus   (need the real image)
  discriminator      D(x̂): LlamaGen's PatchGAN logit, higher = more real
  codebook_cosine    cos(sampled codebook latent, real pre-quant latent)  (need the real image and the tokens)
  perceptual         −LPIPS-style distance on a vapi classifier's stages  (need the real image; the demo's
                     stand-in for LPIPS, `objectives.perceptual`: never use the evaluation network)
  features           −‖φ(x̂) − φ(x)‖² of a vapi classifier's features      (need the real image)
  classifier         p(y = condition | x̂) of a vapi classifier            (class-id conditions)
  clip               cos(CLIP(x̂), CLIP(text)): AR-GRPO's CLIP score       (captions, or class names in a template)

plus any user function `module:function` with the same signature (`reward.functions`, weights in
`reward.function_weights`, as TRL's reward_funcs / reward_weights). VA-π's reference runs use mse 1 + lpips 1;
free-running GRPO has no real image, so only the target-free terms apply there.

Decoding and scoring run in chunks (`chunk_size`) to bound memory; `score_tokens` is called under no_grad, while the
STE and tokenizer methods call the same terms with gradients (their loss is −R).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vapi.config import helpf
from vapi.models.protocols import Condition, PromptCondition, index_condition
from vapi.objectives.reward_models import (BACKBONE_FILES, ClipScorer, PatchDiscriminator, build_lpips,  # noqa: F401
                                           load_classifier, load_discriminator)

WEIGHTS = ("mse", "l1", "lpips", "perceptual", "discriminator", "codebook_cosine", "features", "classifier", "clip")
TARGET_TERMS = ("mse", "l1", "lpips", "perceptual", "codebook_cosine", "features")


@dataclass
class RewardConfig:
    mse: float = helpf(1.0, "weight of −pixel MSE (needs the real image)")
    l1: float = helpf(0.0, "weight of −pixel L1 (needs the real image)")
    lpips: float = helpf(1.0, "weight of −LPIPS (needs the real image)")
    lpips_net: str = helpf("vgg", "LPIPS backbone: vgg (LlamaGen runs) | alex (Janus runs) | squeeze")
    lpips_weights: str = helpf("", "path to the torchvision backbone weights (default: torchvision's cache)")
    lpips_random_backbone: bool = helpf(False, "TEST ONLY: random LPIPS backbone, never for reported numbers")
    perceptual: float = helpf(0.0, "weight of −an LPIPS-style distance (unit-normalised stage features, spatial "
                                    "mean, summed over stages; no learned heads) on a vapi classifier "
                                    "(perceptual_path): the stand-in for LPIPS when its backbone is not cached")
    perceptual_path: str = helpf("", "vapi classifier folder of the `perceptual` term (never the evaluation net)")
    discriminator: float = helpf(0.0, "weight of the PatchGAN realism logit D(x̂) (needs discriminator_path)")
    discriminator_path: str = helpf("", "LlamaGen VQ training checkpoint (key 'discriminator') or a bare state dict")
    codebook_cosine: float = helpf(0.0, "weight of cos(sampled codebook latent, real pre-quant latent); LlamaGen VQ "
                                        "only")
    features: float = helpf(0.0, "weight of −squared distance of a vapi classifier's features (features_path)")
    features_path: str = helpf("", "vapi classifier folder whose features(x) the `features` term compares")
    classifier: float = helpf(0.0, "weight of p(class | image) from a vapi classifier (classifier_path); C2I only")
    classifier_path: str = helpf("", "vapi classifier folder (`vapi pretrain features`) for the classifier term")
    clip: float = helpf(0.0, "weight of the CLIP image-text cosine (clip_path), AR-GRPO's CLIP score")
    clip_path: str = helpf("", "local transformers CLIP folder (CLIPModel + tokenizer) for the clip term")
    clip_prompt: str = helpf("a photo of a {}", "C2I: the CLIP text of a class, {} = its class-folder name")
    functions: list[str] = helpf([], "user reward functions `module:function`, called (images, targets|None, "
                                     "condition) → [N], higher is better")
    function_weights: list[float] = helpf([], "weights of `functions` in order; empty = 1 each")
    chunk_size: int = helpf(16, "images decoded and scored per chunk (bounds memory)")

    def __post_init__(self):
        for name in WEIGHTS:
            if getattr(self, name) < 0:
                raise ValueError(f"reward weight {name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.lpips_net not in BACKBONE_FILES:
            raise ValueError(f"lpips_net must be one of {sorted(BACKBONE_FILES)}, got {self.lpips_net!r}")
        for name in ("perceptual", "discriminator", "features", "classifier", "clip"):
            if getattr(self, name) > 0 and not getattr(self, f"{name}_path"):
                raise ValueError(f"reward.{name} > 0 needs reward.{name}_path")
        for spec in self.functions:
            if spec.count(":") != 1 or not all(spec.split(":")):
                raise ValueError(f"reward.functions entries look like module:function, got {spec!r}")
        if self.function_weights and len(self.function_weights) != len(self.functions):
            raise ValueError(f"reward.function_weights has {len(self.function_weights)} entries for "
                             f"{len(self.functions)} reward.functions; give one weight per function or none")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    @property
    def any_term(self) -> bool:
        return any(getattr(self, n) > 0 for n in WEIGHTS) or any(self.function_weights or [1.0] * len(self.functions))

    def target_terms(self) -> list[str]:
        """The enabled terms that compare with the real image (unusable without one, e.g. in free-running GRPO)."""
        return [name for name in TARGET_TERMS if getattr(self, name) > 0]


@runtime_checkable
class RewardTerm(Protocol):
    name: str
    weight: float
    needs_target: bool

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | None, condition: Condition) -> torch.Tensor:
        """→ [N], higher is better."""


class PixelDistance(nn.Module):
    needs_target = True

    def __init__(self, name: str, weight: float, power: int):
        super().__init__()
        self.name, self.weight, self.power = name, weight, power

    def forward(self, images, targets, condition=None):
        diff = images - targets  # [N, 3, H, W]
        return -(diff.pow(2) if self.power == 2 else diff.abs()).flatten(1).mean(1)


class NetTerm(nn.Module):
    """A reward term around a frozen network `net`, weighted by `weight`."""

    def __init__(self, weight: float, net: nn.Module):
        super().__init__()
        self.weight, self.net = weight, net


class Lpips(NetTerm):
    name, needs_target = "lpips", True

    def forward(self, images, targets, condition=None):
        return -self.net(images, targets).flatten(1).mean(1)


class Perceptual(nn.Module):
    name, needs_target = "perceptual", True

    def __init__(self, weight: float, net: nn.Module):
        super().__init__()
        from vapi.objectives.perceptual import FeatureLPIPS

        self.weight, self.distance = weight, FeatureLPIPS(net)

    def forward(self, images, targets, condition=None):
        return -self.distance(images, targets)  # [N]


class Realism(nn.Module):
    name, needs_target = "discriminator", False

    def __init__(self, weight: float, disc: nn.Module):
        super().__init__()
        self.weight, self.disc = weight, disc

    def forward(self, images, targets=None, condition=None):
        return self.disc(images).flatten(1).mean(1)


class CodebookCosine(nn.Module):
    """cos(codebook latent of the sampled tokens, the real image's pre-quantisation latent) (the reference's
    'embedcos'). Needs a tokenizer with `quantize.lookup` and `encode_latent` (LlamaGen's VQ)."""

    name, needs_target, needs_tokens = "codebook_cosine", True, True

    def __init__(self, weight: float, tokenizer):
        super().__init__()
        if not (hasattr(tokenizer, "encode_latent") and hasattr(getattr(tokenizer, "quantize", None), "lookup")):
            raise ValueError(f"reward.codebook_cosine needs a tokenizer with quantize.lookup and encode_latent "
                             f"(LlamaGen's VQ); {type(tokenizer).__name__} has neither: set reward.codebook_cosine=0")
        self.weight, self.tokenizer = weight, [tokenizer]  # a list: not registered (the tokenizer is not ours)

    def forward(self, images, targets, condition=None, tokens=None):
        tok = self.tokenizer[0]
        side = int(round(tokens.shape[1] ** 0.5))
        pred = tok.quantize.lookup(tokens, (side, side))  # [N, C, h, w]
        with torch.no_grad():
            real = tok.encode_latent(targets)  # [N, C, h, w]
        return F.cosine_similarity(pred.flatten(1), real.flatten(1), dim=1)


class FeatureDistance(NetTerm):
    name, needs_target = "features", True

    def forward(self, images, targets, condition=None):
        with torch.no_grad():
            real = self.net.features(targets)  # [N, D]
        return -(self.net.features(images) - real).pow(2).flatten(1).sum(1)


class ClassifierProbability(NetTerm):
    name, needs_target = "classifier", False

    def forward(self, images, targets, condition):
        if isinstance(condition, PromptCondition):
            raise ValueError("reward.classifier scores class-conditional samples (class-id conditions); use "
                             "reward.clip for captions")
        return self.net(images).softmax(-1).gather(1, condition.view(-1, 1).long()).squeeze(1)  # [N]


class ClipScore(nn.Module):
    name, needs_target = "clip", False

    def __init__(self, weight: float, scorer: nn.Module, template: str, class_names: list[str] | None):
        super().__init__()
        self.weight, self.scorer, self.template, self.class_names = weight, scorer, template, class_names

    def texts(self, condition) -> list[str]:
        if isinstance(condition, PromptCondition):
            if condition.texts is None:
                raise ValueError("reward.clip needs the captions as text: this condition carries only their features")
            return list(condition.texts)
        if not self.class_names:
            raise ValueError("reward.clip on class ids needs class names (an ImageFolder's class folders)")
        return [self.template.format(self.class_names[int(c)]) for c in condition.tolist()]

    def forward(self, images, targets, condition):
        return self.scorer(images, self.texts(condition))


class FunctionReward:
    """A user `module:function` reward; its output is checked to be [N]."""

    needs_target = False

    def __init__(self, spec: str, weight: float, fn: Callable | None = None):
        self.spec, self.weight = spec, weight
        self.fn = fn or load_function(spec)
        self.name = spec.split(":")[1]

    def __call__(self, images, targets, condition):
        out = self.fn(images, targets, condition)
        if not isinstance(out, torch.Tensor) or out.shape != (images.shape[0],):
            raise ValueError(f"reward function {self.spec} must return a tensor of shape [{images.shape[0]}], "
                             f"got {type(out).__name__} {tuple(getattr(out, 'shape', ()))}")
        return out.to(images.device, torch.float32)


def load_function(spec: str) -> Callable:
    module_name, fn_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"reward function {spec}: cannot import module {module_name!r} ({e}); is it on "
                         "PYTHONPATH?") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ValueError(f"reward function {spec}: module {module_name} has no function {fn_name!r}")
    return fn


class Reward(nn.Module):
    """The weighted sum of the enabled terms. Frozen; `score_tokens` calls it under no_grad, the STE and tokenizer
    methods with gradients (through the images only)."""

    def __init__(self, cfg: RewardConfig, tokenizer=None, class_names: list[str] | None = None):
        super().__init__()
        self.cfg = cfg
        terms: list = []
        if cfg.mse:
            terms.append(PixelDistance("mse", cfg.mse, 2))
        if cfg.l1:
            terms.append(PixelDistance("l1", cfg.l1, 1))
        if cfg.lpips:
            terms.append(Lpips(cfg.lpips, build_lpips(cfg.lpips_net, cfg.lpips_weights, cfg.lpips_random_backbone)))
        if cfg.perceptual:
            terms.append(Perceptual(cfg.perceptual, load_classifier(cfg.perceptual_path)))
        if cfg.discriminator:
            terms.append(Realism(cfg.discriminator, load_discriminator(cfg.discriminator_path)))
        if cfg.codebook_cosine:
            if tokenizer is None:
                raise ValueError("reward.codebook_cosine needs the tokenizer")
            terms.append(CodebookCosine(cfg.codebook_cosine, tokenizer))
        if cfg.features:
            terms.append(FeatureDistance(cfg.features, load_classifier(cfg.features_path)))
        if cfg.classifier:
            terms.append(ClassifierProbability(cfg.classifier, load_classifier(cfg.classifier_path)))
        if cfg.clip:
            terms.append(ClipScore(cfg.clip, ClipScorer(cfg.clip_path), cfg.clip_prompt, class_names))
        weights = cfg.function_weights or [1.0] * len(cfg.functions)
        terms += [FunctionReward(spec, w) for spec, w in zip(cfg.functions, weights) if w]
        names = [t.name for t in terms]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ValueError(f"reward terms must have distinct names; {', '.join(clash)} appears twice")
        self.items = terms
        self.modules_ = nn.ModuleList([t for t in terms if isinstance(t, nn.Module)])  # moved by .to(device)
        self.requires_grad_(False)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.items]

    @property
    def needs_target(self) -> bool:
        return any(t.needs_target for t in self.items)

    def terms(self, images: torch.Tensor, targets: torch.Tensor | None = None, condition: Condition | None = None,
              tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every enabled term's reward [N] (higher is better), unweighted."""
        out = {}
        for term in self.items:
            if term.needs_target and targets is None:
                raise ValueError(f"reward term {term.name} compares with the real image, which this method does "
                                 f"not have: set reward.{term.name}=0")
            extra = {"tokens": tokens} if getattr(term, "needs_tokens", False) else {}
            out[term.name] = term(images, targets, condition, **extra)
        return out

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = {t.name: t.weight for t in self.items}
        return sum(weights[name] * value for name, value in terms.items())

    def forward(self, images, targets=None, condition=None, tokens=None):
        """→ (R [N], {name: term [N]})."""
        terms = self.terms(images, targets, condition, tokens)
        return self.combine(terms), terms


@torch.no_grad()
def score_tokens(reward: Reward, tokenizer, tokens: torch.Tensor, targets: torch.Tensor | None,
                 condition: Condition | None = None, keep_images: int = 0):
    """Decode sampled tokens [N, T] in chunks and score them (against `targets` [N, 3, H, W] where given).

    Returns (rewards [N], terms {name: [N]}, the first `keep_images` decoded images for logging).
    """
    chunk = reward.cfg.chunk_size
    rewards, terms, kept = [], {}, []
    for s in range(0, tokens.shape[0], chunk):
        part = slice(s, s + chunk)
        pred = tokenizer.decode(tokens[part])  # [n, 3, H, W]
        total, values = reward(pred, None if targets is None else targets[part],
                               None if condition is None else index_condition(condition, part), tokens[part])
        rewards.append(total)
        for k, v in values.items():
            terms.setdefault(k, []).append(v)
        if len(kept) * chunk < keep_images:
            kept.append(pred)
    images = torch.cat(kept)[:keep_images] if kept else None
    return torch.cat(rewards), {k: torch.cat(v) for k, v in terms.items()}, images
