"""The start-of-run summary of `vapi train`: what is about to be trained on what, printed and saved as
`<run>/run_summary.json`, so a wrong resolution, class mapping or batch geometry shows before hours are spent.

    summary = run_summary(cfg, trainer, dataset, notes)   # a nested dict of plain values
    print(format_summary(summary))
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from vapi.config import to_dict, write_text_atomic
from vapi.training.config import RunConfig, resolve_report_to


def _generator(cfg: RunConfig, policy) -> dict:
    config = getattr(policy, "config", None)
    out = {"kind": cfg.model.kind, "path": cfg.model.gpt,
           "parameters_m": round(sum(p.numel() for p in policy.parameters()) / 1e6, 2),
           "trainable_m": round(sum(p.numel() for p in policy.parameters() if p.requires_grad) / 1e6, 2)}
    if cfg.model.kind == "llamagen" and config is not None:
        from vapi.models.infer_config import gpt_preset_name

        out.update(preset=gpt_preset_name(config) or "custom", type=config.model_type, dim=config.dim,
                   layers=config.n_layer)
        out["classes"] = config.num_classes if config.model_type == "c2i" else "text (T5 caption features)"
    else:
        out["classes"] = "text prompts"
    out["vocabulary"] = policy.vocab_size
    return out


def _dataset(cfg: RunConfig, dataset, sample_names: int = 5) -> dict:
    base = getattr(dataset, "dataset", dataset)  # ConditionedDataset wraps the captioned one
    out = {"path": cfg.data.path or cfg.data.kind, "type": type(base).__name__, "images": len(dataset)}
    names = getattr(base, "class_names", None)
    if names:
        class_map = getattr(base, "class_map", None)
        ids = [class_map[n] for n in names] if class_map else list(range(len(names)))
        out["class_folders"] = len(names)
        out["class_mapping"] = f"data.class_map {cfg.data.class_map}" if class_map else "sorted folder name → rank"
        shown = [f"{n} → {i}" for n, i in zip(names[:sample_names], ids[:sample_names])]
        out["class_ids"] = shown + ([f"... ({len(names) - sample_names} more)"] if len(names) > sample_names else [])
    return out


def run_summary(cfg: RunConfig, trainer, dataset, notes: list[str] = ()) -> dict:
    t, o = cfg.train, cfg.objective
    policy, tokenizer, world = trainer.policy, trainer.tokenizer, trainer.dist.world_size
    tokens = policy.num_image_tokens
    side = math.isqrt(tokens)
    vapi, rows = o.name == "vapi", cfg.rows_per_image
    seqs = t.per_device_batch_size * rows
    use_bf16 = t.precision == "bf16" or (t.precision == "auto" and trainer.device.type == "cuda")
    reward_terms = {k: getattr(cfg.reward, k) for k in ("mse", "l1", "lpips", "discriminator", "codebook_cosine",
                                                       "features", "classifier", "clip") if getattr(cfg.reward, k)}
    weights = cfg.reward.function_weights or [1.0] * len(cfg.reward.functions)
    reward_terms.update(dict(zip(cfg.reward.functions, weights)))
    model = trainer.model  # what the method trains: the generator, or the tokenizer (objective.name=tokenizer)
    method = {"name": o.name, "trains": type(model).__name__,
              "trainable_m": round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6, 2)}
    if vapi:
        method.update(num_generations=o.num_generations, context_noise=o.context_noise, prior_weight=o.prior_weight)
    elif o.name != "ce":
        method.update(to_dict(getattr(cfg, o.name)))  # the method's own section
    if o.name != "ce":
        method["reward"] = reward_terms
    return {
        "generator": _generator(cfg, policy),
        "resolution": {"image_size": cfg.model.image_size, "token_grid": f"{side}x{side}", "image_tokens": tokens},
        "tokenizer": {"path": cfg.model.vq or "(inside the Janus model)", "codebook": tokenizer.vocab_size},
        "dataset": _dataset(cfg, dataset),
        "objective": method,
        "batch": {"images_per_device": t.per_device_batch_size, "sequences_per_image": rows,
                  "sequences_per_device": seqs, "micro_batch_size": cfg.micro_batch_size,
                  "micro_batches_per_optimizer_step": cfg.grad_accum_steps,
                  "optimizer_steps_per_rollout": t.steps_per_generation * t.num_iterations,
                  "world_size": world, "images_per_step": t.per_device_batch_size * world,
                  "sequences_per_step": seqs * world, "max_steps": t.max_steps,
                  "learning_rate": cfg.optim.learning_rate},
        "precision": "bf16 autocast" if use_bf16 else "fp32",
        "parallel": trainer.parallel, "device": str(trainer.device), "data_workers": t.num_workers,
        "output": {"run_dir": str(trainer.run_dir), "checkpoints": str(Path(trainer.run_dir) / "checkpoints"),
                   "save_steps": t.save_steps, "free_running_samples": str(Path(trainer.run_dir) / "samples")
                   if t.sample_steps else "off", "report_to": resolve_report_to(t.report_to, t.tensorboard,
                                                                                 t.wandb_project)},
        "notes": list(notes),
    }


def format_summary(summary: dict) -> str:
    lines = ["run summary:"]
    for section, value in summary.items():
        if section == "notes":
            lines += [f"  note: {n}" for n in value]
        elif isinstance(value, dict):
            parts = [f"{k}={', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in value.items()
                     if v is not None]
            lines.append(f"  {section}: " + "; ".join(parts))
        else:
            lines.append(f"  {section}: {value}")
    return "\n".join(lines)


def write_summary(summary: dict, run_dir: str | Path) -> Path:
    path = Path(run_dir) / "run_summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(summary, indent=1, default=str) + "\n")
    return path
