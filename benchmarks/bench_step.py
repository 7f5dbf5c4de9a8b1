"""Where the time of one VA-π update goes, and what free-running rollouts would cost instead.

Times, on one model and batch, each phase of a step (teacher-forced forward, sampling, decode, reward, policy
forward/backward, optimizer), the whole `Trainer.step()`, and the same rollout done by free-running KV-cache
generation of equal B, G and T (the cost the paper compares against: 25 vs 149 minutes). Prints two ratios measured
side by side in this run:
  whole step / sum of the unavoidable phases    (the trainer's own overhead; ~1.0 is ideal)
  free-running rollout / teacher-forced rollout (and the same for a whole step)

    python benchmarks/bench_step.py             # CPU-sized defaults
    python benchmarks/bench_step.py --dim 768 --layers 12 --vocab 16384 --grid 16 --images 16 --device cuda
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from timing import timed
from vapi.data.procedural import ProceduralShapes
from vapi.models.llamagen_gpt import GPTConfig, LlamaGenGPT
from vapi.models.llamagen_vq import VQConfig, VQModel
from vapi.objectives import VaPiLoss, group_advantages, sample_from_logits
from vapi.sampling import SamplingConfig, generate
from vapi.training.config import RunConfig
from vapi.training.trainer import Trainer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--grid", type=int, default=16, help="token grid side: T = grid²")
    ap.add_argument("--images", type=int, default=4, help="B: real images per rollout batch")
    ap.add_argument("--generations", type=int, default=8, help="G")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    vq = VQModel(VQConfig(codebook_size=args.vocab, codebook_embed_dim=8, encoder_ch_mult=[1, 1, 2],
                          decoder_ch_mult=[1, 1, 2], z_channels=32, ch=32))
    image_size = args.grid * vq.downsample
    policy = LlamaGenGPT(GPTConfig(dim=args.dim, n_layer=args.layers, n_head=args.heads, vocab_size=args.vocab,
                                   block_size=args.grid**2, num_classes=10))
    torch.nn.init.normal_(policy.output.weight, std=0.02)
    data = ProceduralShapes(64, image_size=image_size, seed=0)

    cfg = RunConfig()
    cfg.reward.lpips_net, cfg.reward.lpips_random_backbone = "alex", True  # timing only: weights do not matter
    cfg.objective.num_generations = args.generations
    cfg.train.per_device_batch_size = args.images
    cfg.train.micro_batch_size = args.micro_batch
    cfg.train.device, cfg.train.progress, cfg.train.tensorboard, cfg.train.image_steps = args.device, False, False, 0
    cfg.train.output_dir = tempfile.mkdtemp(prefix="vapi-bench-")
    trainer = Trainer(cfg, policy, vq, data)
    G, B, T = args.generations, args.images, args.grid**2
    print(f"GPT dim {args.dim} × {args.layers} layers, vocab {args.vocab}, T={T}; B={B} images × G={G}; "
          f"{args.device}; best of {args.repeats}")

    images, labels = next(trainer.stream)
    images, labels = images.to(device), labels.to(device)
    phases = {}
    with torch.no_grad():
        phases["encode"], gt = timed(lambda: vq.encode(images), device, args.repeats)
        policy.eval()
        phases["tf_forward"], logits = timed(lambda: policy.teacher_forced_logits(labels, gt), device, args.repeats)
        phases["sampling"], (tokens, old_logps) = timed(lambda: sample_from_logits(logits, G), device, args.repeats)
        phases["decode"], decoded = timed(lambda: vq.decode(tokens), device, args.repeats)
        target = images.repeat_interleave(G, 0)
        reward_mod = trainer.reward
        phases["reward"], terms = timed(lambda: reward_mod.terms(decoded, target), device, args.repeats)
    rewards = reward_mod.combine(terms)
    adv = group_advantages(rewards, G)
    loss_fn = VaPiLoss(grad_accum_steps=cfg.grad_accum_steps)
    cond, ctx = labels.repeat_interleave(G), gt.repeat_interleave(G, 0)
    policy.train()

    def fwd_bwd():
        for s in range(0, B * G, args.micro_batch):
            part = slice(s, s + args.micro_batch)
            out = policy.teacher_forced_logits(cond[part], ctx[part])
            loss, _ = loss_fn(out, tokens[part], old_logps[part], adv[part], ctx[part])
            loss.backward()

    phases["policy_fwd_bwd"], _ = timed(fwd_bwd, device, args.repeats)
    phases["optimizer"], _ = timed(lambda: trainer.optimizer.step(), device, args.repeats)
    trainer.optimizer.zero_grad(set_to_none=True)
    step_time, _ = timed(trainer.step, device, args.repeats)
    free, _ = timed(lambda: generate(policy, cond, SamplingConfig(), num_tokens=T), device, args.repeats)

    unavoidable = sum(phases.values())
    tf_rollout = phases["tf_forward"] + phases["sampling"]
    for name, t in phases.items():
        print(f"  {name:<16} {t * 1e3:9.1f} ms  ({t / unavoidable:5.1%})")
    print(f"  {'whole step':<16} {step_time * 1e3:9.1f} ms")
    print(f"  {'free-running gen':<16} {free * 1e3:9.1f} ms  (KV cache, {B * G} sequences × {T} tokens)")
    print(f"ratio whole step / sum of phases:               {step_time / unavoidable:.2f}")
    print(f"ratio free-running / teacher-forced rollout:    {free / tf_rollout:.1f}x")
    print(f"ratio step with free-running / step with TF:    {(step_time - tf_rollout + free) / step_time:.1f}x")


if __name__ == "__main__":
    main()
