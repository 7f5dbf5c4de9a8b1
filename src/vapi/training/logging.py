"""MetricLogger: the one place that knows about rank 0, the progress bar, JSONL, TensorBoard, W&B and image grids.

Training code calls `log(step, metrics)` and `log_images(step, ...)`; on ranks other than 0 both are no-ops.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm


# Shown in the progress bar, in this order, when present.
BAR_KEYS = ("reward", "reward_std", "loss", "clip_ratio", "seqs_per_sec")


class MetricLogger:
    def __init__(self, run_dir: Path, total_steps: int, start_step: int = 0, rank: int = 0,
                 tensorboard: bool = True, wandb_project: str = "", config: dict | None = None,
                 progress: bool = True):
        self.rank = rank
        self.run_dir = Path(run_dir)
        self.active = rank == 0
        self.bar = self.tb = self.wandb = None
        if not self.active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "images").mkdir(exist_ok=True)
        self.jsonl = open(self.run_dir / "metrics.jsonl", "a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start_step or None)
        if wandb_project:
            import wandb

            self.wandb = wandb.init(project=wandb_project, dir=str(self.run_dir), config=config or {},
                                    resume="allow")
        if progress:
            self.bar = tqdm(total=total_steps, initial=start_step, desc="VA-π", dynamic_ncols=True)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        clean = {k: float(v) for k, v in metrics.items()}
        self.jsonl.write(json.dumps({"step": step, **clean}) + "\n")
        self.jsonl.flush()
        if self.tb:
            for k, v in clean.items():
                if math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
        if self.wandb:
            self.wandb.log(clean, step=step)
        if self.bar:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix({k: f"{clean[k]:.4g}" for k in BAR_KEYS if k in clean}, refresh=False)

    def log_images(self, step: int, gt: torch.Tensor, samples: torch.Tensor, rewards: torch.Tensor) -> Path | None:
        """A grid with one row per image: ground truth | its G samples, each labelled with its reward.

        gt: [n, 3, H, W], samples: [n*G, 3, H, W], rewards: [n*G], all images in [-1, 1].
        """
        if not self.active:
            return None
        grid = reward_grid(gt, samples, rewards)
        path = self.run_dir / "images" / f"step-{step:06d}.png"
        grid.save(path)
        if self.tb:
            self.tb.add_image("samples", np.asarray(grid), step, dataformats="HWC")
        if self.wandb:
            import wandb

            self.wandb.log({"samples": wandb.Image(str(path))}, step=step)
        return path

    def write(self, message: str) -> None:
        if self.active:
            (self.bar.write if self.bar else print)(message)

    def close(self) -> None:
        if not self.active:
            return
        if self.bar:
            self.bar.close()
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()
        self.jsonl.close()


def _hwc_uint8(images: torch.Tensor):
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def reward_grid(gt: torch.Tensor, samples: torch.Tensor, rewards: torch.Tensor, cell: int = 96) -> Image.Image:
    n = gt.shape[0]
    G = samples.shape[0] // n
    label_h = 14
    canvas = Image.new("RGB", ((G + 1) * cell + 4, n * (cell + label_h)), "white")
    draw = ImageDraw.Draw(canvas)
    gt_u8, s_u8 = _hwc_uint8(gt), _hwc_uint8(samples)  # [n, H, W, 3] uint8
    for i in range(n):
        y = i * (cell + label_h)
        canvas.paste(Image.fromarray(gt_u8[i]).resize((cell, cell), Image.NEAREST), (0, y))
        draw.text((2, y + cell), "real", fill="black")
        for k in range(G):
            x = (k + 1) * cell + 4
            canvas.paste(Image.fromarray(s_u8[i * G + k]).resize((cell, cell), Image.NEAREST), (x, y))
            draw.text((x + 2, y + cell), f"R={rewards[i * G + k].item():.3f}", fill="black")
    return canvas
