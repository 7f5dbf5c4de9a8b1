"""Pretrain a small LlamaGen VQ tokenizer on a user's (or the embedded procedural) images.

Loss = mse·MSE + l1·L1 + gradient·L1(image gradients) + codebook·‖sg(z) − e‖² + β‖z − sg(e)‖² (β =
`commit_beta`, applied inside `VQModel`). Departures from LlamaGen's VQGAN recipe, all for a few minutes of CPU:
no GAN and no LPIPS (LPIPS needs a downloaded VGG); a cheap image-gradient L1 stands in for the perceptual term and
keeps edges sharp. The codebook is initialised from encoder outputs of the first batch and dead codes (rarely used over
the last `restart_every` steps) are restarted on random current latents, which keeps usage near 100%.

    from vapi.data import ProceduralShapes
    metrics = pretrain_tokenizer(TokenizerPretrainConfig(), ProceduralShapes(30_000), "runs/tok")
CLI: `vapi pretrain tokenizer --out runs/tok --procedural 30000 steps=600`.

A long build can save its training state every N steps (`checkpoint_every`; the CLI's `--checkpoint-every`) to
`<out>.partial.pt` beside the output folder; running it again with the same options resumes there and ends with the
same weights as an uninterrupted run on the same machine and thread count (tested). The file is read with vapi's
safe loader and removed once the tokenizer is written.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from vapi.config import helpf
from vapi.models.weights_io import save_pretrained
from vapi.models.llamagen_vq import VQConfig, VQModel
from vapi.models.infer_config import CheckpointError
from vapi.models.state_dict_io import load_torch_file
from vapi.pretrain import (SeededBatches, load_all, optimizer_and_schedule, seed_everything, subsets,
                           write_metrics)


@dataclass
class TokenizerPretrainConfig:
    image_size: int = helpf(32, "training image side (images are center-cropped / rendered at this size)")
    ch: int = helpf(16, "encoder/decoder base width (LlamaGen: 128)")
    ch_mult: list[int] = helpf([1, 2, 2], "width multipliers per level; downsample = 2^(levels-1): [1,2] → 2, "
                                          "[1,2,2] → 4")
    num_res_blocks: int = helpf(1, "residual blocks per level (LlamaGen: 2)")
    norm_groups: int = helpf(8, "GroupNorm groups; must divide every width ch·m")
    z_channels: int = helpf(32, "encoder output channels before the 1x1 quant_conv (LlamaGen: 256)")
    codebook_size: int = helpf(256, "number of codes = the prior's vocabulary")
    codebook_dim: int = helpf(8, "code dimension (l2-normalised, LlamaGen: 8)")
    steps: int = helpf(600, "optimizer steps")
    batch_size: int = helpf(64, "images per step")
    lr: float = helpf(2e-3, "peak AdamW learning rate (warmup then cosine to 10%)")
    warmup_steps: int = helpf(50, "linear warmup steps")
    weight_decay: float = helpf(0.0, "AdamW weight decay")
    mse: float = helpf(1.0, "weight of the pixel MSE loss")
    l1: float = helpf(0.2, "weight of the pixel L1 loss")
    gradient: float = helpf(0.2, "weight of the image-gradient L1 loss (cheap perceptual stand-in; 0 = off)")
    codebook: float = helpf(1.0, "weight of the codebook loss ||sg(z) - e||^2")
    commit_beta: float = helpf(0.25, "commitment loss weight beta (LlamaGen: 0.25)")
    restart_every: int = helpf(100, "check for dead codes every this many steps (0 = never restart)")
    restart_threshold: float = helpf(0.03, "a code is dead if used less than this fraction of the uniform share "
                                           "(assignments / codebook_size) since the last check")
    val_size: int = helpf(1000, "held-out images for the final metrics")
    seed: int = helpf(0, "seed of init, data order and the hold-out split")
    num_workers: int = helpf(0, "DataLoader workers")

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.codebook_size < 2:
            raise ValueError("steps, batch_size must be >= 1 and codebook_size >= 2")
        self.vq_config()  # width / groups check with a readable message

    def vq_config(self) -> VQConfig:
        return VQConfig(codebook_size=self.codebook_size, codebook_embed_dim=self.codebook_dim,
                        encoder_ch_mult=list(self.ch_mult), decoder_ch_mult=list(self.ch_mult),
                        z_channels=self.z_channels, ch=self.ch, num_res_blocks=self.num_res_blocks,
                        norm_groups=self.norm_groups, commit_loss_beta=self.commit_beta, dropout_p=0.0)


def image_gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean |∇x − ∇y| over horizontal and vertical finite differences; x, y: [B, 3, H, W]."""
    dx = (x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1])
    dy = (x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :])
    return 0.5 * (dx.abs().mean() + dy.abs().mean())


def tokenizer_loss(cfg: TokenizerPretrainConfig, vq: VQModel, images: torch.Tensor, latent: torch.Tensor | None = None):
    """The weighted training loss on images [B, 3, S, S] → (loss, detached stats, codes [B, h*w], latent)."""
    latent = vq.encode_latent(images) if latent is None else latent  # [B, C, h, w]
    quant, codes, vq_losses = vq.quantize_latent(latent)
    recon = vq.decode_latent(quant)  # [B, 3, S, S]
    terms = {"mse": F.mse_loss(recon, images), "l1": F.l1_loss(recon, images),
             "gradient": image_gradient_l1(recon, images), **vq_losses}
    loss = (cfg.mse * terms["mse"] + cfg.l1 * terms["l1"] + cfg.gradient * terms["gradient"]
            + cfg.codebook * terms["codebook"] + terms["commit"])  # commit is already scaled by commit_beta
    return loss, {k: v.item() for k, v in terms.items()}, codes, latent


@torch.no_grad()
def _normalised_latents(vq: VQModel, latent: torch.Tensor) -> torch.Tensor:
    """latent [B, C, h, w] → the vectors the quantiser compares to codes [B*h*w, C]."""
    z = latent.permute(0, 2, 3, 1).reshape(-1, latent.shape[1])
    return F.normalize(z, dim=-1) if vq.config.codebook_l2_norm else z


@torch.no_grad()
def restart_codes(vq: VQModel, optimizer: torch.optim.Optimizer, dead: torch.Tensor, latent: torch.Tensor,
                  generator: torch.Generator) -> int:
    """Move `dead` code ids onto random current latents (plus a little noise); clear their Adam moments."""
    ids = dead.nonzero().flatten()
    if ids.numel() == 0:
        return 0
    z = _normalised_latents(vq, latent)  # [N, C]
    pick = torch.randint(0, z.shape[0], (ids.numel(),), generator=generator)
    new = z[pick] + 0.01 * torch.randn(ids.numel(), z.shape[1], generator=generator)
    weight = vq.quantize.embedding.weight
    weight[ids] = new
    state = optimizer.state.get(weight, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][ids] = 0.0
    return int(ids.numel())


@torch.no_grad()
def evaluate_tokenizer(vq: VQModel, images: torch.Tensor, batch_size: int = 256) -> dict:
    """Reconstruction quality on images [N, 3, H, W] in [-1, 1]: MSE/L1 (that scale), PSNR (dB, [0, 1] scale),
    codebook usage (% of codes used at least once) and code perplexity."""
    was = vq.training
    vq.eval()
    se, ae, counts = 0.0, 0.0, torch.zeros(vq.config.codebook_size)
    for i in range(0, len(images), batch_size):
        x = images[i: i + batch_size]
        codes = vq.encode(x)  # [b, h*w]
        recon = vq.decode(codes)  # [b, 3, H, W]
        se += F.mse_loss(recon, x, reduction="sum").item()
        ae += F.l1_loss(recon, x, reduction="sum").item()
        counts += torch.bincount(codes.flatten(), minlength=vq.config.codebook_size).float()
    vq.train(was)
    n = images.numel()
    mse = se / n
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return {"val_mse": mse, "val_l1": ae / n, "val_psnr": 10 * math.log10(4.0 / max(mse, 1e-12)),
            "codebook_usage_pct": 100.0 * (counts > 0).float().mean().item(), "code_perplexity": math.exp(entropy)}


def partial_path(out_dir: str | Path) -> Path:
    """Where a tokenizer build keeps its training state between runs: `<out_dir>.partial.pt`, beside the folder."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.partial.pt"


PARTIAL_KEYS = ("config", "data", "step", "model", "optimizer", "scheduler", "generator", "torch_rng", "batches",
                "usage", "restarted", "history", "train_seconds")


def data_fingerprint(train_set: Dataset) -> dict:
    """What the build trains on, to tell its saved state from another's: the number of images and a hash of the
    first, middle and last one."""
    n = len(train_set)
    digest = hashlib.sha256()
    for i in sorted({0, n // 2, n - 1}):
        digest.update(train_set[i][0].numpy().tobytes())
    return {"images": n, "sha256": digest.hexdigest()[:16]}


def save_partial(path: Path, state: dict) -> None:
    """Write `state` to `path` atomically and durably (a temporary file of this process, flushed to disk, then a
    rename): a crash or power loss mid-write keeps the previous state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_partial(path: Path, cfg: TokenizerPretrainConfig, data: dict) -> dict | None:
    """The saved training state of this build, None if there is none; a one-line error if it is unreadable or
    another build's."""
    if not path.is_file():
        return None
    try:
        state = load_torch_file(path, safe_globals=(), advice="")
    except CheckpointError as e:
        raise CheckpointError(f"{e}; delete it to start the build over") from None
    missing = [k for k in PARTIAL_KEYS if k not in state] if isinstance(state, dict) else ["config"]
    if missing or not isinstance(state["config"], dict):
        raise ValueError(f"{path} is not a vapi tokenizer training state (no {(missing or ['config'])[0]!r}): "
                         f"delete it to start the build over")
    differ = [k for k, v in asdict(cfg).items() if state["config"].get(k) != v]
    if differ or state["data"] != data:
        what = f"option {differ[0]}" if differ else "the training images"
        raise ValueError(f"{path} holds the training state of another tokenizer build ({what} differs): give the "
                         f"same options and data to resume it, or delete the file to start over")
    return state


def pretrain_tokenizer(cfg: TokenizerPretrainConfig, dataset: Dataset, out_dir: str | Path,
                       progress: bool = True, checkpoint_every: int = 0) -> dict:
    """Train a VQ tokenizer on `dataset` ((image [3, S, S] in [-1, 1], label) items); write it and metrics.json
    to `out_dir`; return the final metrics. `checkpoint_every` > 0: save the training state every that many steps
    to `partial_path(out_dir)`, and resume from it when it is there (module docstring)."""
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 (0 = never), got {checkpoint_every}")
    t0 = time.perf_counter()
    gen = seed_everything(cfg.seed)
    train_set, val_set = subsets(dataset, cfg.val_size, cfg.seed)
    vq = VQModel(cfg.vq_config())
    vq.config.latent_grid(cfg.image_size)
    vq.train()
    optimizer, scheduler = optimizer_and_schedule(vq, cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.steps,
                                                  betas=(0.9, 0.99), final_fraction=0.1)
    batches = SeededBatches(train_set, cfg.batch_size, gen, cfg.num_workers)
    usage = torch.zeros(cfg.codebook_size)  # code counts since the last restart check
    restarted, history, start, before = 0, [], 0, 0.0
    partial = partial_path(out_dir)
    data = data_fingerprint(train_set) if checkpoint_every else {}
    saved = load_partial(partial, cfg, data) if checkpoint_every else None
    if saved is not None:
        vq.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        batches.load_state_dict(saved["batches"], saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        usage, restarted, history = saved["usage"], saved["restarted"], list(saved["history"])
        start, before = saved["step"], saved["train_seconds"]
        print(f"tokenizer: resuming at step {start} of {cfg.steps} from {partial}", flush=True)
    bar = tqdm(range(start, cfg.steps), desc="tokenizer", disable=not progress, mininterval=2.0, initial=start,
               total=cfg.steps)
    for step in bar:
        images, _ = next(batches)  # [B, 3, S, S]
        if images.shape[-1] != cfg.image_size:
            raise ValueError(f"dataset images are {images.shape[-1]}px but image_size={cfg.image_size}")
        latent = vq.encode_latent(images)  # [B, C, h, w]
        if step == 0:  # data-dependent init: the uniform ±1/K init leaves most codes unreachable
            restart_codes(vq, optimizer, torch.ones(cfg.codebook_size, dtype=torch.bool), latent, gen)
        loss, stats, codes, latent = tokenizer_loss(cfg, vq, images, latent)  # codes [B, h*w]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vq.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        usage += torch.bincount(codes.flatten(), minlength=cfg.codebook_size).float()
        if cfg.restart_every and (step + 1) % cfg.restart_every == 0 and step + 1 < cfg.steps:
            dead = usage < cfg.restart_threshold * usage.sum() / cfg.codebook_size
            restarted += restart_codes(vq, optimizer, dead, latent.detach(), gen)
            usage.zero_()
        history.append(loss.item())
        if step % 20 == 0 or step == cfg.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{stats['mse']:.4f}", restarts=restarted)
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < cfg.steps:
            save_partial(partial, {
                "config": asdict(cfg), "data": data, "step": step + 1,
                "model": vq.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "batches": batches.state_dict(),
                "usage": usage, "restarted": restarted, "history": history,
                "train_seconds": before + time.perf_counter() - t0})
    train_s = before + time.perf_counter() - t0
    val_images, _ = load_all(val_set)
    metrics = {"stage": "tokenizer", **evaluate_tokenizer(vq, val_images), "final_train_loss": history[-1],
               "codes_restarted": restarted, "downsample": vq.downsample,
               "tokens_per_image": vq.config.latent_grid(cfg.image_size) ** 2,
               "params": sum(p.numel() for p in vq.parameters()), "train_seconds": train_s,
               "wall_seconds": time.perf_counter() - t0 + before, "config": asdict(cfg)}
    if start:
        metrics["resumed_at_step"] = start
    save_pretrained(vq, out_dir, overwrite=True)  # replaces out_dir: extras are written after it
    write_metrics(out_dir, metrics)
    partial.unlink(missing_ok=True)  # this folder's build is done: a saved state of it is stale
    print(f"tokenizer: val MSE {metrics['val_mse']:.4f}  PSNR {metrics['val_psnr']:.2f} dB  codebook usage "
          f"{metrics['codebook_usage_pct']:.1f}%  ({metrics['tokens_per_image']} tokens/image, "
          f"{metrics['wall_seconds']:.0f} s) → {out_dir}")
    return metrics
