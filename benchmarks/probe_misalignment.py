"""How misaligned are a tokenizer and a prior? The numbers the demo's VA-π setting has to be chosen on.

On held-out images x with tokens c = encode(x), for a prior p(c_t | class, c_<t):
  recon_mse         MSE(decode(c), x): the tokenizer's floor
  tf_sample_mse     MSE(decode(ĉ), x), ĉ_t ~ p(· | class, c_<t) drawn independently at every position from the
                    clean teacher-forced context (VA-π's rollout, ξ = 0); tf_argmax_mse the same with argmax
  tf_token_error    fraction of positions where ĉ_t ≠ c_t
  random_sub_mse    control: the same number of tokens per image replaced at random positions by random codes.
                    tf_sample_mse < random_sub_mse means the prior's mistakes are "close" codes
  reencode_change_* 1 − mean(encode(decode(s)) == s) for s = real tokens, TF samples and free-running samples
                    (KV-cache generation at --cfg): how far off the tokenizer's manifold token grids decode
  reencode_mse_*    MSE(decode(encode(decode(s))), decode(s)): the same in pixels, blind to swaps between
                    near-synonym codes (which inflate reencode_change_real when the codebook is redundant)
Reward-side misalignment is tf_sample_mse − recon_mse; free-running misalignment is reencode_change_free −
reencode_change_real.

    python benchmarks/probe_misalignment.py                                  # tiny models trained here, seconds
    python benchmarks/probe_misalignment.py --tokenizer runs/tok --prior runs/prior --num-images 1000 --cfg 1 2
    python benchmarks/probe_misalignment.py --train --ch-mult 1 2 --codebook-size 1024 --tok-steps 280 \
        --prior-steps 600 --train-images 20000 --out runs/probe_ds2          # train at a real setting, then probe
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vapi.data import ProceduralShapes
from vapi.eval.generation import reencode_change_rate
from vapi.models.weights_io import load_pretrained
from vapi.objectives.rollout import sample_from_logits
from vapi.sampling import SamplingConfig, generate


def _batched(fn, *tensors, batch_size: int):
    outs = [fn(*(t[i: i + batch_size] for t in tensors)) for i in range(0, len(tensors[0]), batch_size)]
    return torch.cat(outs)


@torch.no_grad()
def probe_misalignment(tokenizer, prior, images: torch.Tensor, labels: torch.Tensor, *, cfg_scales=(1.0,),
                       num_free: int | None = None, batch_size: int = 256, seed: int = 0) -> dict:
    """Misalignment metrics of (tokenizer, prior) on images [N, 3, H, W] in [-1, 1] with labels [N]."""
    gen = torch.Generator().manual_seed(seed)
    tokenizer.eval(), prior.eval()
    out, t0 = {}, time.perf_counter()
    mse = lambda codes: _batched(  # noqa: E731
        lambda c, x: F.mse_loss(tokenizer.decode(c), x, reduction="none").mean((1, 2, 3)), codes, images,
        batch_size=batch_size).mean().item()
    codes = _batched(tokenizer.encode, images, batch_size=batch_size)  # [N, T]
    out["recon_mse"] = mse(codes)
    logits = _batched(prior.teacher_forced_logits, labels, codes, batch_size=batch_size)  # [N, T, V]
    out["tf_ce_nats"] = F.cross_entropy(logits.flatten(0, 1), codes.flatten()).item()
    sampled, _ = sample_from_logits(logits, 1, generator=gen)  # [N, T]: VA-π's clean-context rollout, G = 1
    argmax = logits.argmax(-1)  # [N, T]
    out["tf_sample_mse"], out["tf_argmax_mse"] = mse(sampled), mse(argmax)
    wrong = sampled != codes  # [N, T]
    out["tf_token_error"], out["tf_argmax_error"] = wrong.float().mean().item(), (argmax != codes).float().mean().item()
    # Control: per image, as many random positions as the TF sample changed, set to random codes.
    order = torch.rand(codes.shape, generator=gen).argsort(dim=1)  # [N, T] random position ranks
    pick = order < wrong.sum(1, keepdim=True)
    noise = torch.randint(0, tokenizer.config.codebook_size, codes.shape, generator=gen)
    out["random_sub_mse"] = mse(torch.where(pick, noise, codes))
    out["probe_tf_seconds"] = time.perf_counter() - t0

    for name, tokens in (("real", codes), ("tf_sample", sampled)):
        out[f"reencode_change_{name}"], out[f"reencode_mse_{name}"] = reencode_change_rate(
            tokenizer, tokens, batch_size, pixel_error=True)
    free_labels = labels[: num_free or len(labels)]
    for scale in cfg_scales:
        t = time.perf_counter()
        free = _batched(lambda y: generate(prior, y, SamplingConfig(cfg_scale=scale), generator=gen), free_labels,
                        batch_size=batch_size)  # [M, T]
        out[f"free_sample_seconds_cfg{scale:g}"] = time.perf_counter() - t
        out[f"reencode_change_free_cfg{scale:g}"], out[f"reencode_mse_free_cfg{scale:g}"] = reencode_change_rate(
            tokenizer, free, batch_size, pixel_error=True)
    out["probe_seconds"] = time.perf_counter() - t0
    return out


def train_pair(args, out: Path) -> tuple[Path, Path, dict]:
    """Train a tokenizer and a prior at the flags' setting (wall times land in their metrics)."""
    from vapi.pretrain.prior import PriorPretrainConfig, pretrain_prior
    from vapi.pretrain.tokenizer import TokenizerPretrainConfig, pretrain_tokenizer

    data = ProceduralShapes(args.train_images, args.image_size, seed=0)
    tok_cfg = TokenizerPretrainConfig(image_size=args.image_size, ch=args.ch, ch_mult=args.ch_mult,
                                      norm_groups=args.norm_groups, z_channels=args.z_channels,
                                      codebook_size=args.codebook_size, steps=args.tok_steps,
                                      batch_size=args.batch_size, val_size=args.val_size,
                                      warmup_steps=min(50, args.tok_steps // 5 + 1), lr=args.tok_lr)
    tok = pretrain_tokenizer(tok_cfg, data, out / "tokenizer")
    prior_cfg = PriorPretrainConfig(image_size=args.image_size, dim=args.dim, n_layer=args.layers,
                                    n_head=args.heads, steps=args.prior_steps, batch_size=args.batch_size,
                                    val_size=args.val_size, warmup_steps=min(100, args.prior_steps // 5 + 1))
    prior = pretrain_prior(prior_cfg, out / "tokenizer", data, out / "prior")
    return out / "tokenizer", out / "prior", {"tokenizer": tok, "prior": prior}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", help="tokenizer folder to probe (else one is trained)")
    p.add_argument("--prior", help="prior folder to probe (else one is trained)")
    p.add_argument("--out", help="folder for trained models and probe.json (default: a temp folder)")
    p.add_argument("--num-images", type=int, default=32, help="held-out probe images (procedural seed 1)")
    p.add_argument("--num-free", type=int, default=0, help="free-running samples (0 = num-images)")
    p.add_argument("--cfg", type=float, nargs="+", default=[1.0], help="CFG scales of the free-running samples")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("training (without --tokenizer/--prior); tiny defaults")
    g.add_argument("--image-size", type=int, default=16)
    g.add_argument("--train-images", type=int, default=200)
    g.add_argument("--ch", type=int, default=8)
    g.add_argument("--ch-mult", type=int, nargs="+", default=[1, 2])
    g.add_argument("--norm-groups", type=int, default=4)
    g.add_argument("--z-channels", type=int, default=16)
    g.add_argument("--codebook-size", type=int, default=64)
    g.add_argument("--tok-steps", type=int, default=20)
    g.add_argument("--tok-lr", type=float, default=2e-3)
    g.add_argument("--prior-steps", type=int, default=20)
    g.add_argument("--dim", type=int, default=32)
    g.add_argument("--layers", type=int, default=1)
    g.add_argument("--heads", type=int, default=2)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--val-size", type=int, default=20)
    args = p.parse_args(argv)

    out = Path(args.out or tempfile.mkdtemp(prefix="vapi_probe_"))
    trained = {}
    if args.tokenizer and args.prior:
        tok_dir, prior_dir = Path(args.tokenizer), Path(args.prior)
    else:
        tok_dir, prior_dir, trained = train_pair(args, out)
    tokenizer, prior = load_pretrained(tok_dir), load_pretrained(prior_dir)
    size = tokenizer.downsample * int(round(prior.config.block_size ** 0.5))
    data = ProceduralShapes(args.num_images, size, seed=1)  # unseen: training uses seed 0
    images = torch.stack([data[i][0] for i in range(len(data))])  # [N, 3, S, S]
    labels = torch.tensor([data.label(i) for i in range(len(data))])  # [N]
    result = probe_misalignment(tokenizer, prior, images, labels, cfg_scales=args.cfg,
                                num_free=args.num_free or None, seed=args.seed)
    result.update(tokenizer=str(tok_dir), prior=str(prior_dir), num_images=len(images),
                  tokens_per_image=prior.config.block_size, codebook_size=tokenizer.config.codebook_size)
    if trained:
        keys = ("val_mse", "val_psnr", "codebook_usage_pct", "val_ce_nats", "val_token_acc", "train_seconds",
                "encode_seconds", "wall_seconds")
        result["training"] = {k: {m: v[m] for m in keys if m in v} for k, v in trained.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(result, indent=1))
    for k, v in result.items():
        print(f"{k:>32}: {v:.4f}" if isinstance(v, float) else f"{k:>32}: {v}")
    return result


if __name__ == "__main__":
    main()
