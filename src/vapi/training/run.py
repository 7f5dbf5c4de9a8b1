"""`train(cfg)`: build the generator, tokenizer and data a RunConfig names, then run the trainer (library API)."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

from vapi.data.captions import ConditionedDataset
from vapi.data.build import CaptionedDataset, build_dataset
from vapi.models.build import build_policy
from vapi.models.lora import apply_lora
from vapi.training.config import RunConfig
from vapi.training.distributed import DistInfo, barrier, init_distributed
from vapi.training.summary import format_summary, run_summary, write_summary
from vapi.training.trainer import Trainer


def check_weight_files(cfg: RunConfig) -> None:
    """Third-party weights the run will need, checked before minutes of model loading (see `vapi env`)."""
    from vapi.weights import cache_path, missing_message

    r = cfg.reward
    if cfg.objective.name != "ce" and r.lpips and not r.lpips_random_backbone:
        path = Path(r.lpips_weights) if r.lpips_weights else cache_path(f"lpips-{r.lpips_net}")
        if not path.is_file():
            raise FileNotFoundError(f"reward.lpips={r.lpips} needs LPIPS's backbone: "
                                    + missing_message(f"lpips-{r.lpips_net}", path, "reward.lpips_weights")
                                    + " (or turn the term off with reward.lpips=0)")
    t = cfg.train
    if t.gen_metrics_steps and t.gen_metrics_features == "inception" and not cache_path("inception").is_file():
        raise FileNotFoundError("train.gen_metrics_features=inception: " + missing_message("inception"))


def check_image_size(cfg: RunConfig) -> None:
    """The generator's resolution is never guessed: an official file names it (c2i_XXL_384.pt) or it is given."""
    from vapi.models.infer_config import image_size_from_filename

    gpt = Path(cfg.model.gpt)
    if cfg.model.kind == "llamagen" and not cfg.model.image_size and gpt.is_file() \
            and image_size_from_filename(gpt) is None:
        raise ValueError(f"model.image_size is required: {gpt.name} does not record the image size the generator "
                         "was trained at (LlamaGen's files carry it only in their name, e.g. c2i_XXL_384.pt); set "
                         "model.image_size=256 or 384")


def at_model_resolution(cfg: RunConfig, image_size: int) -> RunConfig:
    """A copy of `cfg` at the generator's resolution: `model.image_size` filled in (0 = from the weights) and the
    data cropped to it. The run records this copy in its config.yaml; the caller's config is left as it was."""
    cfg = copy.deepcopy(cfg)
    cfg.model.image_size = cfg.data.image_size = image_size
    return cfg


def build_trainer(cfg: RunConfig, resume: str | bool = False, dist: DistInfo | None = None) -> Trainer:
    """Under torchrun this joins the process group (if the caller has not) and every rank builds its trainer.
    `cfg` is not modified."""
    dist = dist or init_distributed(cfg.train.device)
    check_image_size(cfg)
    check_weight_files(cfg)
    notes = []
    models = build_policy(cfg.model.kind, cfg.model.gpt, cfg.model.vq, text=cfg.text_encoder,
                          gpt_preset=cfg.model.gpt_model or None, image_size=cfg.model.image_size or None,
                          text_device=dist.device)
    cfg = at_model_resolution(cfg, models.image_size)  # images are cropped to the resolution the generator knows
    if cfg.model.lora.rank > 0:
        apply_lora(models.policy, cfg.model.lora)
    dataset = build_dataset(cfg.data)
    captions = isinstance(dataset, CaptionedDataset)
    if models.prompt_encoder is not None:
        if not captions:
            raise ValueError("a text-to-image generator trains on captioned images: set data.kind=captions (images "
                             "+ .jsonl/.csv) or data.kind=webdataset (tar shards of jpg + txt/json)")
        if dist.rank == 0:
            models.prompt_encoder.prepare(dataset.captions)  # rank 0 computes and caches T5 features ...
        barrier()
        dataset = ConditionedDataset(dataset, models.prompt_encoder)  # ... the other ranks read them
        getattr(models.prompt_encoder, "release", lambda: None)()  # training reads the cache, not T5
    elif captions:
        raise ValueError("this generator is class-conditional: it trains on class folders, not captioned images")
    else:
        classes, gpt_classes = dataset.num_classes, models.policy.config.num_classes
        if classes and classes > gpt_classes:
            raise ValueError(f"the data has {classes} classes but the generator knows {gpt_classes}; "
                             "class folders map to generator class ids in sorted order (set data.class_map)")
        if classes and classes < gpt_classes and not cfg.data.class_map and cfg.data.kind != "procedural":
            notes.append(f"the data has {classes} class folders but the generator knows {gpt_classes} classes: "
                         f"folders get ids 0..{classes - 1} by sorted name, which are the generator's classes only "
                         "if that is how it was trained; set data.class_map (folder name → id, or imagenet for "
                         "ImageNet synset folders) to be sure")
    trainer = Trainer(cfg, models.policy, models.tokenizer, dataset, resume=resume, dist=dist)
    if dist.rank == 0:
        summary = run_summary(cfg, trainer, dataset, notes)
        write_summary(summary, trainer.run_dir)
        print(format_summary(summary), flush=True)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
    return trainer


def train(cfg: RunConfig, resume: str | bool = False, dist: DistInfo | None = None) -> dict[str, float]:
    return build_trainer(cfg, resume, dist).train()
