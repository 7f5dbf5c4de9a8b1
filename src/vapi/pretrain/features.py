"""Pretrain a small CNN classifier whose multi-scale features serve as the evaluation network (CPU FID stand-in).

Light augmentation (random shifts of up to `shift` pixels with reflect padding, horizontal flips) keeps the net from
memorising exact pixel positions; no colour augmentation, because colour and texture are what the early-stage
features must keep seeing. After training, `feature_scale` is calibrated on the held-out images so every stage
weighs the same in a Fréchet distance. Reports held-out test accuracy. Train one `arch="convnet"` and one
`arch="resnet"` to get two independent metric views (see `vapi.models.classifier`).

    metrics = pretrain_features(FeaturesPretrainConfig(arch="resnet"), ProceduralShapes(30_000), "runs/feat")
    extractor = ClassifierExtractor(load_pretrained("runs/feat"))  # vapi.models.weights_io, vapi.eval.features
CLI: `vapi pretrain features --out runs/feat --procedural 30000 arch=resnet`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from vapi.config import helpf
from vapi.models.weights_io import save_pretrained
from vapi.models.classifier import Classifier, ClassifierConfig
from vapi.pretrain import (SeededBatches, load_all, optimizer_and_schedule, seed_everything, subsets,
                           write_metrics)


@dataclass
class FeaturesPretrainConfig:
    image_size: int = helpf(32, "image side (images are center-cropped / rendered at this size)")
    arch: str = helpf("convnet", "convnet (plain VGG-style) | resnet (pre-activation residual)")
    widths: list[int] = helpf([16, 32, 64], "channels of each stage; the feature dim is their sum")
    blocks: int = helpf(1, "conv layers (convnet) or residual blocks (resnet) per stage")
    num_classes: int = helpf(0, "number of classes; 0 = from the dataset")
    steps: int = helpf(300, "optimizer steps")
    batch_size: int = helpf(128, "images per step")
    lr: float = helpf(3e-3, "peak AdamW learning rate (warmup then cosine to 0)")
    warmup_steps: int = helpf(30, "linear warmup steps")
    weight_decay: float = helpf(5e-4, "AdamW weight decay (not on norms and biases)")
    shift: int = helpf(2, "augmentation: random translation in pixels (reflect padding); 0 = off")
    flip: bool = helpf(True, "augmentation: random horizontal flips")
    val_size: int = helpf(1000, "held-out test images for the accuracy")
    seed: int = helpf(0, "seed of init, data order, augmentation and the hold-out split")
    num_workers: int = helpf(0, "DataLoader workers")

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.shift < 0:
            raise ValueError("steps and batch_size must be >= 1, shift >= 0")
        self.classifier_config(10)  # arch / widths check

    def classifier_config(self, num_classes: int) -> ClassifierConfig:
        return ClassifierConfig(arch=self.arch, num_classes=num_classes, widths=list(self.widths),
                                blocks=self.blocks)


def augment(images: torch.Tensor, shift: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random per-image shifts (reflect-padded crops) and horizontal flips. images [B, 3, H, W] → same shape."""
    B, _, H, W = images.shape
    if shift > 0:
        padded = F.pad(images, (shift,) * 4, mode="reflect")  # [B, 3, H+2s, W+2s]
        dy, dx = (torch.randint(0, 2 * shift + 1, (B,), generator=generator) for _ in range(2))
        rows = (dy[:, None] + torch.arange(H))[:, None, :, None].expand(B, 3, H, W + 2 * shift)
        images = padded.gather(2, rows)  # [B, 3, H, W+2s]
        cols = (dx[:, None] + torch.arange(W))[:, None, None, :].expand(B, 3, H, W)
        images = images.gather(3, cols)  # [B, 3, H, W]
    if flip:
        mask = torch.rand(B, generator=generator) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    return images


@torch.no_grad()
def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    was = model.training
    model.eval()
    correct = sum((model(images[i: i + batch_size]).argmax(-1) == labels[i: i + batch_size]).sum().item()
                  for i in range(0, len(images), batch_size))
    model.train(was)
    return correct / len(images)


@torch.no_grad()
def calibrate_feature_scale(model: Classifier, images: torch.Tensor, batch_size: int = 500) -> list[float]:
    """Set `feature_scale` so each stage's features have total variance 1 on `images` [N, 3, H, W]; the head is
    rescaled so logits do not change. Returns each stage's total variance before scaling."""
    was = model.training
    model.eval()
    pooled = torch.cat([model.pooled(images[i: i + batch_size]) for i in range(0, len(images), batch_size)])  # [N, D]
    variances, new = [], torch.ones_like(model.feature_scale)
    start = 0
    for w in model.config.widths:
        var = pooled[:, start: start + w].var(dim=0).sum().item()
        variances.append(var)
        new[start: start + w] = 1.0 / max(var, 1e-12) ** 0.5
        start += w
    model.head.weight.mul_(model.feature_scale / new)  # W·(f·s) == (W·s/s')·(f·s')
    model.feature_scale.copy_(new)
    model.train(was)
    return variances


def pretrain_features(cfg: FeaturesPretrainConfig, dataset: Dataset, out_dir: str | Path,
                      progress: bool = True) -> dict:
    """Train the classifier on `dataset`; write it (kind "classifier") and metrics.json to `out_dir`."""
    t0 = time.perf_counter()
    gen = seed_everything(cfg.seed)
    train_set, val_set = subsets(dataset, cfg.val_size, cfg.seed)
    val_images, val_labels = load_all(val_set)  # [V, 3, H, W], [V]
    num_classes = cfg.num_classes or int(getattr(dataset, "num_classes", 0) or val_labels.max().item() + 1)
    model = Classifier(cfg.classifier_config(num_classes)).train()
    optimizer, scheduler = optimizer_and_schedule(model, cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.steps,
                                                  betas=(0.9, 0.99))
    batches = SeededBatches(train_set, cfg.batch_size, gen, cfg.num_workers)
    bar = tqdm(range(cfg.steps), desc=f"features ({cfg.arch})", disable=not progress, mininterval=2.0)
    for step in bar:
        images, labels = next(batches)  # [B, 3, H, W], [B]
        logits = model(augment(images, cfg.shift, cfg.flip, gen))  # [B, C]
        loss = F.cross_entropy(logits, labels.long())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 20 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    train_s = time.perf_counter() - t0
    stage_variances = calibrate_feature_scale(model, val_images)
    metrics = {"stage": "features", "test_accuracy": accuracy(model, val_images, val_labels),
               "stage_feature_variance": stage_variances,
               "final_train_loss": loss.item(), "feature_dim": model.config.feature_dim,
               "num_classes": num_classes, "params": sum(p.numel() for p in model.parameters()),
               "train_seconds": train_s, "wall_seconds": time.perf_counter() - t0, "config": asdict(cfg)}
    save_pretrained(model.eval(), out_dir, overwrite=True)
    write_metrics(out_dir, metrics)
    print(f"features ({cfg.arch}): test accuracy {100 * metrics['test_accuracy']:.2f}%  (feature dim "
          f"{metrics['feature_dim']}, {metrics['wall_seconds']:.0f} s) → {out_dir}")
    return metrics
