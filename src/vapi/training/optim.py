"""AdamW with parameter groups and a warmup + constant / cosine / linear LR schedule: the one optimizer builder of
post-training (the reference's groups: no weight decay on norm weights) and of `vapi.pretrain` (its groups: no
decay on biases, norms and embedding tables; cosine to a floor)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vapi.config import helpf

SCHEDULES = ("constant", "cosine", "linear")
# Which parameters get no weight decay, by (name, parameter).
NO_DECAY = {
    "norm": lambda name, p: "norm" in name,  # the VA-π reference: norm weights
    "vectors_and_embeddings": lambda name, p: p.ndim < 2 or "embedding" in name,  # biases, norms, embedding tables
}


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


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig, no_decay: str = "norm") -> torch.optim.AdamW:
    """AdamW over the trainable parameters in two groups: decayed, then those `NO_DECAY[no_decay]` selects."""
    skip = NO_DECAY[no_decay]
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for name, p in params if not skip(name, p)], "weight_decay": cfg.weight_decay},
              {"params": [p for name, p in params if skip(name, p)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_epsilon)


def build_scheduler(optimizer, cfg: OptimConfig, total_steps: int,
                    final_fraction: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `cfg.warmup_steps`, then constant, or a cosine / linear decay that reaches
    `final_fraction` of the peak at `total_steps`."""
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_scheduler_type == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.lr_scheduler_type == "cosine" else 1.0 - progress
        return final_fraction + (1 - final_fraction) * decay

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
