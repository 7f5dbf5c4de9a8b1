"""AdamW with the reference's parameter groups (no weight decay on norm weights) and an optional LR schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vapi.config import helpf

SCHEDULES = ("constant", "cosine", "linear")


@dataclass
class OptimConfig:
    learning_rate: float = helpf(1e-6, "peak learning rate (paper, LlamaGen-XXL: 1e-6)")
    adam_beta1: float = helpf(0.9, "AdamW beta1")
    adam_beta2: float = helpf(0.999, "AdamW beta2")
    adam_epsilon: float = helpf(1e-8, "AdamW epsilon")
    weight_decay: float = helpf(1e-4, "AdamW weight decay (not applied to norm weights)")
    max_grad_norm: float = helpf(1.0, "gradient clipping norm; 0 = off")
    lr_scheduler_type: str = helpf("constant", "constant | cosine | linear (decay to 0 after warmup)")
    warmup_steps: int = helpf(0, "linear warmup, in optimizer steps")

    def __post_init__(self):
        if self.lr_scheduler_type not in SCHEDULES:
            raise ValueError(f"lr_scheduler_type must be one of {SCHEDULES}, got {self.lr_scheduler_type!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.adam_epsilon <= 0:
            raise ValueError(f"adam_epsilon must be > 0, got {self.adam_epsilon}")
        for name in ("weight_decay", "max_grad_norm", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_epsilon)


def build_scheduler(optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_scheduler_type == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if cfg.lr_scheduler_type == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
