"""Pretraining stages for small tokenizers, priors and evaluation nets (the CPU demo; users' own small data).

    from vapi.pretrain.tokenizer import TokenizerPretrainConfig, pretrain_tokenizer
    from vapi.pretrain.prior import PriorPretrainConfig, pretrain_prior
    from vapi.pretrain.features import FeaturesPretrainConfig, pretrain_features

Each stage writes a model folder with `vapi.models.weights_io.save_pretrained` (`config.json` {"kind", "config"} +
`model.safetensors`; read back with `load_pretrained`), then `metrics.json` into the same folder, and is
deterministic given its seed (same machine, same thread count). This module holds what the three stages share: the
held-out split, seeded endless batches (resumable), the optimizer and schedule (`training.optim`'s, with these
stages' options) and the metrics file. This is the training layer: it imports models, data, eval and `training.optim`, and nothing
there imports it.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from vapi.training.optim import OptimConfig, build_optimizer, build_scheduler


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


class SeededBatches:
    """Endless shuffled batches (images [B, 3, H, W] in [-1, 1], labels [B]); order fixed by `generator`.

    `state_dict()` says where the stream is (the generator's state when the current pass over the data began, and how
    many of its batches were taken); `load_state_dict(state, generator_state)` puts a fresh stream there: it replays
    the pass's first batches from that state, then sets the generator to `generator_state`, its state at the save
    (draws others made from it since, such as code restarts). The batches after a resume are the ones an
    uninterrupted run takes. Workers are not kept between passes: every pass makes its draws (the iterator's base
    seed, then the order) from the generator, so a replayed pass draws what the original did."""

    def __init__(self, dataset: Dataset, batch_size: int, generator: torch.Generator, num_workers: int = 0):
        self.generator = generator
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size,
                                 generator=generator, num_workers=num_workers)
        self._pass, self._pass_start, self._taken = None, None, 0

    def __iter__(self):
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            if self._pass is None:  # a new pass draws its order from the generator
                self._pass_start, self._taken = self.generator.get_state(), 0
                self._pass = iter(self.loader)
            try:
                images, labels = next(self._pass)
            except StopIteration:
                self._pass = None
                continue
            self._taken += 1
            return images, torch.as_tensor(labels)

    def state_dict(self) -> dict:
        return {"pass_start": self._pass_start, "taken": self._taken}

    def load_state_dict(self, state: dict, generator_state: torch.Tensor) -> None:
        if state["pass_start"] is not None:
            self.generator.set_state(state["pass_start"])
            self._pass, self._pass_start, self._taken = None, None, 0
            for _ in range(state["taken"]):
                next(self)
        self.generator.set_state(generator_state)


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


def optimizer_and_schedule(model: torch.nn.Module, lr: float, weight_decay: float, warmup_steps: int, steps: int,
                           betas=(0.9, 0.95), final_fraction: float = 0.0):
    """`training.optim`'s AdamW without decay on biases, norms and embedding tables, and its schedule: linear warmup
    over `warmup_steps`, then cosine decay to `final_fraction` of the peak at `steps`. → (optimizer, scheduler)."""
    cfg = OptimConfig(learning_rate=lr, adam_beta1=betas[0], adam_beta2=betas[1], weight_decay=weight_decay,
                      lr_scheduler_type="cosine", warmup_steps=warmup_steps)
    optimizer = build_optimizer(model, cfg, no_decay="vectors_and_embeddings")
    return optimizer, build_scheduler(optimizer, cfg, steps, final_fraction)


def write_metrics(out_dir: str | Path, metrics: dict) -> dict:
    """metrics.json in `out_dir`; call it after save_pretrained, which replaces the whole folder."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=False))
    return metrics
