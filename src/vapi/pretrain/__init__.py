"""Pretraining stages for small tokenizers, priors and evaluation nets (the CPU demo; users' own small data).

    from vapi.pretrain.tokenizer import TokenizerPretrainConfig, pretrain_tokenizer
    from vapi.pretrain.prior import PriorPretrainConfig, pretrain_prior
    from vapi.pretrain.features import FeaturesPretrainConfig, pretrain_features

Each stage writes a model folder with `vapi.models.weights_io.save_pretrained` (`config.json` {"kind", "config"} +
`model.safetensors`; read back with `load_pretrained`), then `metrics.json` into the same folder, and is
deterministic given its seed (same machine, same thread count). This module holds what the three stages share: the
held-out split, seeded infinite batches, AdamW groups, the warmup-cosine schedule and the metrics file.
This is the training layer: it imports models, data and eval, and nothing there imports it.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset


def seed_everything(seed: int) -> torch.Generator:
    """Seed python/numpy/torch and select deterministic kernels; returns a CPU generator for data order and sampling.

    Deterministic kernels matter on a CPU too: with 2 threads, 60 tokenizer steps differed by up to 7.7e-3 between
    two identical runs; with `use_deterministic_algorithms(True)` they were bit-identical at the same speed.
    """
    torch.use_deterministic_algorithms(True)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def split_indices(n: int, val_size: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random hold-out of `val_size` items (class-sorted folders stay balanced); (train, val) indices."""
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be in [1, {n - 1}] for a dataset of {n} images, got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[val_size:]), sorted(perm[:val_size])


def infinite_batches(dataset: Dataset, batch_size: int, generator: torch.Generator,
                     num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches (images [B, 3, H, W] in [-1, 1], labels [B]); order fixed by `generator`."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size,
                        generator=generator, num_workers=num_workers, persistent_workers=num_workers > 0)
    while True:
        for images, labels in loader:
            yield images, torch.as_tensor(labels)


def load_all(dataset: Dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item in order: (images [N, 3, H, W] float32 in [-1, 1], labels [N] int64). For small held-out sets."""
    images, labels = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images.append(x)
        labels.append(torch.as_tensor(y))
    return torch.cat(images), torch.cat(labels).long()


def subsets(dataset: Dataset, val_size: int, seed: int) -> tuple[Subset, Subset]:
    train_idx, val_idx = split_indices(len(dataset), val_size, seed)
    return Subset(dataset, train_idx), Subset(dataset, val_idx)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int,
                  final_fraction: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup` steps, then cosine decay to `final_fraction` of the peak at `total`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW without decay on biases, norms and embeddings (anything with < 2 dims or an embedding table)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "embedding" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas)


def write_metrics(out_dir: str | Path, metrics: dict) -> dict:
    """metrics.json in `out_dir`; call it after save_pretrained, which replaces the whole folder."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=False))
    return metrics
