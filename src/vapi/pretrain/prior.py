"""Pretrain a small class-conditional LlamaGen GPT prior on the tokens of a frozen tokenizer.

The dataset is encoded once (optionally cached on disk, keyed by the tokenizer's weights and the dataset size), then
the GPT learns next-token cross-entropy with LlamaGen's recipe at toy scale: class dropout 0.1 to the null class
(so CFG works), token/residual/FFN dropout, AdamW (no decay on norms/embeddings), warmup + cosine. Reported: clean
teacher-forced validation CE (nats; eval mode, true classes) and top-1 token accuracy, and a sample grid
(`samples.png`, one row per class) drawn with KV-cache sampling.

    metrics = pretrain_prior(PriorPretrainConfig(), "runs/tok", ProceduralShapes(30_000), "runs/prior")
CLI: `vapi pretrain prior --tokenizer runs/tok --out runs/prior --procedural 30000 steps=2000`.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from vapi.config import helpf
from vapi.eval.generation import teacher_forced_eval
from vapi.imageio import save_grid
from vapi.models.state_dict_io import load_torch_file
from vapi.models.weights_io import load_vq, save_pretrained
from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT
from vapi.models.llamagen_vq import VQModel
from vapi.pretrain import optimizer_and_schedule, seed_everything, split_indices, write_metrics
from vapi.sampling import SamplingConfig, sample_images


@dataclass
class PriorPretrainConfig:
    image_size: int = helpf(32, "image side the dataset is encoded at (tokens per image = (side / downsample)^2)")
    dim: int = helpf(128, "transformer width")
    n_layer: int = helpf(4, "transformer blocks")
    n_head: int = helpf(4, "attention heads (head_dim = dim / n_head, a multiple of 4)")
    multiple_of: int = helpf(32, "SwiGLU hidden size rounding (LlamaGen: 256)")
    num_classes: int = helpf(0, "number of classes; 0 = from the dataset")
    class_dropout: float = helpf(0.1, "probability of the null class in training (enables CFG)")
    dropout: float = helpf(0.1, "token, residual and FFN dropout (LlamaGen: 0.1)")
    steps: int = helpf(2000, "optimizer steps")
    batch_size: int = helpf(64, "sequences per step")
    lr: float = helpf(1e-3, "peak AdamW learning rate (warmup then cosine to 0)")
    warmup_steps: int = helpf(100, "linear warmup steps")
    weight_decay: float = helpf(0.05, "AdamW weight decay (not on norms, biases, embeddings)")
    grad_clip: float = helpf(1.0, "gradient-norm clip; 0 = off")
    val_size: int = helpf(1000, "held-out images for validation CE / accuracy")
    encode_batch_size: int = helpf(256, "images per tokenizer forward when encoding the dataset")
    token_cache: str = helpf("", "file to cache the encoded dataset in (reused when tokenizer and size match)")
    sample_cfg_scale: float = helpf(2.0, "CFG scale of the sample grid")
    samples_per_class: int = helpf(8, "columns of the sample grid (0 = no grid)")
    seed: int = helpf(0, "seed of init, data order, hold-out split and samples")
    num_workers: int = helpf(0, "DataLoader workers while encoding")

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if not 0 <= self.class_dropout < 1 or not 0 <= self.dropout < 1:
            raise ValueError("class_dropout and dropout must be in [0, 1)")

    def gpt_config(self, vocab_size: int, grid: int, num_classes: int) -> GPTConfig:
        return GPTConfig(dim=self.dim, n_layer=self.n_layer, n_head=self.n_head, multiple_of=self.multiple_of,
                         token_dropout_p=self.dropout, resid_dropout_p=self.dropout, ffn_dropout_p=self.dropout,
                         num_classes=num_classes, class_dropout_prob=self.class_dropout, model_type="c2i",
                         vocab_size=vocab_size, cls_token_num=1, block_size=grid * grid,
                         max_seq_len=grid * grid + 1)


def _weights_key(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, t in model.state_dict().items():
        h.update(k.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_dataset(tokenizer: VQModel, dataset: Dataset, batch_size: int = 256, num_workers: int = 0,
                   progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image in order → (tokens [N, T] int64, labels [N] int64)."""
    tokens, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    for images, y in tqdm(loader, desc="encode", disable=not progress, mininterval=2.0):
        tokens.append(tokenizer.encode(images).to(torch.int32))  # [b, T]
        labels.append(torch.as_tensor(y))
    return torch.cat(tokens).long(), torch.cat(labels).long()


def cached_tokens(cfg: PriorPretrainConfig, tokenizer: VQModel, dataset: Dataset,
                  progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    key = f"{_weights_key(tokenizer)}-{len(dataset)}-{cfg.image_size}"
    path = Path(cfg.token_cache) if cfg.token_cache else None
    if path is not None and path.is_file():
        saved = load_torch_file(path, safe_globals=())
        if saved.get("key") == key:
            return saved["tokens"].long(), saved["labels"].long()
    tokens, labels = encode_dataset(tokenizer, dataset, cfg.encode_batch_size, cfg.num_workers, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "tokens": tokens.to(torch.int32), "labels": labels}, path)
    return tokens, labels


def pretrain_prior(cfg: PriorPretrainConfig, tokenizer: VQModel | str | Path, dataset: Dataset,
                   out_dir: str | Path, progress: bool = True) -> dict:
    """Train a GPT prior on `tokenizer`'s codes of `dataset`; write it, metrics.json and samples.png to `out_dir`."""
    t0 = time.perf_counter()
    tokenizer_path = str(tokenizer) if isinstance(tokenizer, (str, Path)) else None
    vq = load_vq(tokenizer_path) if tokenizer_path else tokenizer
    vq.eval().requires_grad_(False)
    grid = vq.config.latent_grid(cfg.image_size)
    tokens, labels = cached_tokens(cfg, vq, dataset, progress)  # [N, T], [N]
    gen = seed_everything(cfg.seed)  # after encoding: a DataLoader draws from the global RNG, a cache hit does not
    encode_s = time.perf_counter() - t0
    num_classes = cfg.num_classes or int(getattr(dataset, "num_classes", 0) or labels.max().item() + 1)
    train_idx, val_idx = (torch.tensor(i) for i in split_indices(len(tokens), cfg.val_size, cfg.seed))

    gpt = LlamaGenGPT(cfg.gpt_config(vq.config.codebook_size, grid, num_classes)).train()
    optimizer, scheduler = optimizer_and_schedule(gpt, cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.steps)
    perm, pos = torch.randperm(len(train_idx), generator=gen), 0
    bar = tqdm(range(cfg.steps), desc="prior", disable=not progress, mininterval=2.0)
    t_train = time.perf_counter()
    for step in bar:
        if pos + cfg.batch_size > len(perm):
            perm, pos = torch.randperm(len(train_idx), generator=gen), 0
        idx = train_idx[perm[pos: pos + cfg.batch_size]]
        pos += cfg.batch_size
        x, y = tokens[idx], labels[idx]  # [B, T], [B]
        logits = gpt.teacher_forced_logits(y, x)  # [B, T, V]
        loss = F.cross_entropy(logits.flatten(0, 1), x.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(gpt.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        if step % 20 == 0 or step == cfg.steps - 1:
            bar.set_postfix(ce=f"{loss.item():.3f}")
    train_s = time.perf_counter() - t_train
    val = teacher_forced_eval(gpt, tokens[val_idx], labels[val_idx])
    metrics = {"stage": "prior", "val_ce_nats": val["val_ce"], "val_token_acc": val["val_token_acc"],
               "uniform_ce_nats": math.log(vq.config.codebook_size), "final_train_ce": loss.item(),
               "tokens_per_image": grid * grid, "vocab_size": vq.config.codebook_size, "num_classes": num_classes,
               "epochs": cfg.steps * cfg.batch_size / len(train_idx),
               "params": sum(p.numel() for p in gpt.parameters()), "encode_seconds": encode_s,
               "train_seconds": train_s, "tokenizer": tokenizer_path, "config": asdict(cfg)}
    gpt.eval()
    save_pretrained(gpt, out_dir, overwrite=True)  # replaces out_dir: extras are written after it
    if cfg.samples_per_class > 0:
        t_s = time.perf_counter()
        cond = torch.arange(num_classes).repeat_interleave(cfg.samples_per_class)  # [C*n]
        images = sample_images(gpt, vq, cond, SamplingConfig(cfg_scale=cfg.sample_cfg_scale), generator=gen)
        save_grid(images, Path(out_dir) / "samples.png", nrow=cfg.samples_per_class, padding=1)  # [C*n, 3, H, W]
        metrics["sample_seconds"] = time.perf_counter() - t_s
    metrics["wall_seconds"] = time.perf_counter() - t0
    write_metrics(out_dir, metrics)
    print(f"prior: val CE {metrics['val_ce_nats']:.3f} nats (uniform {metrics['uniform_ce_nats']:.2f})  token acc "
          f"{100 * metrics['val_token_acc']:.1f}%  ({metrics['epochs']:.1f} epochs, {metrics['wall_seconds']:.0f} s)"
          f" → {out_dir}")
    return metrics
