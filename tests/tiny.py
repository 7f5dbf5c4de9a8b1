"""The tests' tiny models, configs and official-layout checkpoint files (seconds on a CPU).

- `tiny_policy` / `tiny_tokenizer` / `tiny_config`: a 2-layer GPT (LlamaGen init, head given signal), a small VQ and
  a RunConfig for 2-step training runs; `trained_tokenizer` fits the VQ for a few seconds;
- `tiny_gpt` / `tiny_vq`: every weight redrawn (outputs depend on all of them) for the weights-I/O tests;
  `write_official` saves them in LlamaGen's and other trainers' containers.
Text-to-image models and caption data are in `t2i_tiny`; fixtures (`run_cli`, `tiny_run`) in `conftest.py`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT
from vapi.models.llamagen_vq import VQConfig, VQModel
from vapi.training.config import RunConfig


def tiny_tokenizer(seed=0, codebook=32):
    torch.manual_seed(seed)
    return VQModel(VQConfig(codebook_size=codebook, codebook_embed_dim=4, encoder_ch_mult=[1, 1, 1],
                            decoder_ch_mult=[1, 1, 1], z_channels=8, ch=8, num_res_blocks=1, norm_groups=4)).eval()


def tiny_policy(seed=0, vocab=32, **kw):
    torch.manual_seed(seed)
    model = LlamaGenGPT(GPTConfig(**{**dict(dim=32, n_layer=2, n_head=2, vocab_size=vocab, block_size=16,
                                            num_classes=10), **kw}))
    torch.nn.init.normal_(model.output.weight, std=0.02)  # as after pretraining; LlamaGen's init zeroes the head
    return model


def tiny_config(tmp_path, **train):
    cfg = RunConfig()
    cfg.reward.lpips = 0.0
    cfg.objective.num_generations = 4
    cfg.train.per_device_batch_size = 4
    cfg.train.micro_batch_size = 8
    cfg.train.max_steps = 2
    cfg.train.image_steps = 0
    cfg.train.sample_steps = 0
    cfg.train.progress = False
    cfg.train.tensorboard = False
    cfg.train.output_dir = str(tmp_path / "run")
    cfg.optim.learning_rate = 1e-3
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def trained_tokenizer(dataset, steps=150, seed=0, codebook=32):
    """A tiny tokenizer fitted for a few seconds, so decoded images depend on the codes (a random one barely does)."""
    tok = tiny_tokenizer(seed, codebook).train()
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = images[torch.randint(0, len(images), (16,), generator=g)]
        recon, losses = tok(batch)
        loss = (recon - batch).pow(2).mean() + losses["codebook"] + losses["commit"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return tok.eval().requires_grad_(False)


# 4x4 token grid: 64 px at downsample 16 (the GPT default), 16 px with the tiny VQ (downsample 4).
GPT_KW = dict(dim=64, n_layer=2, n_head=4, vocab_size=64, block_size=16, num_classes=10, caption_dim=12,
              token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0)
VQ_KW = dict(codebook_size=64, codebook_embed_dim=8, encoder_ch_mult=[1, 2, 2], decoder_ch_mult=[1, 2, 2],
             z_channels=32, ch=32, num_res_blocks=1)


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    # LlamaGen zero-initialises the GPT head: redraw everything so outputs depend on every weight. Fan-in scaling
    # keeps activations finite (exploding ones make CPU convolutions crawl through inf/denormal paths).
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(noise / p[0].numel() ** 0.5 if p.ndim > 1 else 1 + 0.1 * noise)
    return model.eval()


def tiny_gpt(seed: int = 0, **kw) -> LlamaGenGPT:
    kw = {**GPT_KW, **kw}
    if kw.get("model_type") == "t2i":
        kw.setdefault("cls_token_num", 120)
    return _randomize(LlamaGenGPT(GPTConfig(**kw)), seed)


def tiny_vq(seed: int = 0, **kw) -> VQModel:
    return _randomize(VQModel(VQConfig(**{**VQ_KW, **kw})), seed).requires_grad_(False)


def gpt_inputs(model: LlamaGenGPT, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    if cfg.model_type == "c2i":
        cond = torch.randint(0, cfg.num_classes, (batch,), generator=g)
    else:
        cond = torch.randn(batch, cfg.cls_token_num, cfg.caption_dim, generator=g)
    return cond, torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g)


@torch.no_grad()
def gpt_outputs(model: LlamaGenGPT) -> torch.Tensor:
    return model.teacher_forced_logits(*gpt_inputs(model))


@torch.no_grad()
def vq_outputs(model: VQModel) -> torch.Tensor:
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return model.decode(model.encode(images))


def llamagen_args() -> argparse.Namespace:
    """What LlamaGen's train_c2i.py pickles as `args`."""
    return argparse.Namespace(gpt_model="GPT-B", image_size=256, downsample_size=16, vocab_size=16384,
                              lr=1e-4, global_batch_size=256, mixed_precision="bf16", results_dir="results",
                              ema=True, cls_token_num=1, dropout_p=0.1, no_compile=False, gpt_ckpt=None)


def official_container(sd: dict, layout: str, ema: dict | None = None) -> dict:
    """LlamaGen / DeepSpeed / Lightning / FSDP / compiled-DDP wrappings of a state dict."""
    if layout == "train":
        param = torch.nn.Parameter(torch.zeros(3))
        opt = torch.optim.AdamW([param])
        param.grad = torch.ones(3)
        opt.step()  # optimizer state with tensors, as a real training checkpoint
        out = {"model": sd, "args": llamagen_args(), "steps": 3, "optimizer": opt.state_dict()}
        if ema is not None:
            out["ema"] = ema
        return out
    if layout == "module":
        return {"module": sd}
    if layout == "state_dict":
        return {"state_dict": sd}
    if layout == "bare":
        return dict(sd)
    if layout == "prefixed":  # DDP around torch.compile, saved without unwrapping
        return {"model": {f"module._orig_mod.{k}": v for k, v in sd.items()}}
    raise ValueError(layout)


def write_official(model, path: Path, layout: str = "train", ema: dict | None = None) -> Path:
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(official_container(sd, layout, ema), path)
    return path
