"""`train(cfg)`: build the generator, tokenizer and data a RunConfig names, then run the trainer (library API)."""
from __future__ import annotations

from vapi.data.images import build_dataset
from vapi.models.checkpoint import build_generator_and_tokenizer
from vapi.training.config import RunConfig
from vapi.training.trainer import Trainer


def build_trainer(cfg: RunConfig, resume: str | bool = False) -> Trainer:
    if not cfg.model.gpt or not cfg.model.vq:
        raise ValueError("model.gpt and model.vq are required (checkpoint files or vapi model folders)")
    models = build_generator_and_tokenizer(cfg.model.gpt, cfg.model.vq, gpt_preset=cfg.model.gpt_model or None,
                                           image_size=cfg.model.image_size or None)
    cfg.model.image_size = models.image_size
    if cfg.data.image_size != models.image_size:
        cfg.data.image_size = models.image_size  # images are cropped to the resolution the generator was trained at
    dataset = build_dataset(cfg.data)
    classes = getattr(dataset, "num_classes", None)
    gpt_classes = models.gpt.config.num_classes
    if models.gpt.config.model_type == "c2i" and classes and classes > gpt_classes:
        raise ValueError(f"the data has {classes} classes but the generator knows {gpt_classes}; "
                         "class folders map to generator class ids in sorted order")
    return Trainer(cfg, models.gpt, models.vq, dataset, resume=resume)


def train(cfg: RunConfig, resume: str | bool = False) -> dict[str, float]:
    return build_trainer(cfg, resume).train()
