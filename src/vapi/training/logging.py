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

from vapi.imageio import make_grid


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

            self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else 0)
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise ValueError("train.report_to includes wandb but the wandb package is not installed: pip install "
                                 "wandb (or 'vapi[wandb]'), or set train.report_to=tensorboard") from None
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
        return self._write_image("samples/teacher_forced", self.run_dir / "images" / f"step-{step:06d}.png",
                                 reward_grid(gt, samples, rewards), step)

    def log_sample_grid(self, step: int, images: torch.Tensor, nrow: int) -> Path | None:
        """Free-running samples [rows * nrow, 3, H, W] in [-1, 1] as `samples/step-XXXXXX.png` (cells at full size)."""
        if not self.active:
            return None
        grid = Image.fromarray(make_grid(images, nrow))
        return self._write_image("samples/free_running", self.run_dir / "samples" / f"step-{step:06d}.png", grid, step)

    def _write_image(self, tag: str, path: Path, grid: Image.Image, step: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        if self.tb:
            self.tb.add_image(tag, np.asarray(grid), step, dataformats="HWC")
        if self.wandb:
            import wandb

            self.wandb.log({tag: wandb.Image(str(path))}, step=step)
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


def reward_grid(gt: torch.Tensor, samples: torch.Tensor, rewards: torch.Tensor, min_cell: int = 64) -> Image.Image:
    """One row per image, ground truth | its G samples, at the model's resolution, with a band under each row giving
    each sample's reward. Cells smaller than `min_cell` px (tiny test models) are enlarged by an integer factor
    (pixel replication, no resampling) so the labels fit."""
    n = gt.shape[0]
    G = samples.shape[0] // n
    cells = torch.cat([gt.unsqueeze(1).cpu().float(), samples.view(n, G, *samples.shape[1:]).cpu().float()],
                      dim=1).flatten(0, 1)  # [n * (G + 1), 3, H, W]
    factor = -(-min_cell // cells.shape[-1]) if cells.shape[-1] < min_cell else 1
    if factor > 1:
        cells = cells.repeat_interleave(factor, dim=-1).repeat_interleave(factor, dim=-2)
    h, w = cells.shape[-2:]
    padding, band = 2, 14
    grid = Image.fromarray(make_grid(cells, nrow=G + 1, padding=padding))
    canvas = Image.new("RGB", (grid.width, grid.height + n * band), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        top = i * (h + padding)
        row = grid.crop((0, top, grid.width, top + h + padding + (padding if i == n - 1 else 0)))
        canvas.paste(row, (0, top + i * band))
        y = top + i * band + h + 2 * padding
        draw.text((padding + 2, y), "real", fill="black")
        for k in range(G):
            draw.text((padding + (k + 1) * (w + padding) + 2, y), f"R={rewards[i * G + k].item():.3f}", fill="black")
    return canvas
