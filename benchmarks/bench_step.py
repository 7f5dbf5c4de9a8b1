"""Where the time and memory of one VA-π step go: shared-context vs per-sample update, step vs its physical floor,
free-running vs teacher-forced rollouts. Everything is measured side by side in this one run, on one model and batch.

Prints three groups of ratios:
  update: per-sample / shared time and activation memory (the shared layout runs one forward per image instead of
          one per sequence; target ≥ 0.7·G);
  step:   whole `Trainer.step()` / physical floor, where floor = one teacher-forced forward for the rollout + the
          sampling + G·B decodes + G·B reward forwards + one forward/backward per image + the optimizer step
          (target ≤ 1.3);
  free-running: a step whose rollout is KV-cache generation of the same B·G sequences / the teacher-forced step.

Activation memory is the bytes autograd saves for backward during the update's forwards (distinct storages,
counted with saved-tensor hooks: device-independent), and on CUDA also `torch.cuda.max_memory_allocated`.

    python benchmarks/bench_step.py                          # CPU-sized defaults
    python benchmarks/bench_step.py --preset gpt-b --device cuda --images 16
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import weakref

import torch

from timing import bench_setup, timed
from vapi.methods.vapi import VaPiWork
from vapi.objectives import group_advantages, sample_from_logits, teacher_forced_rollout
from vapi.sampling import SamplingConfig, generate
from vapi.training.trainer import Trainer

PRESETS = {"cpu": dict(dim=256, layers=6, heads=8, vocab=1024, grid=16),
           "gpt-b": dict(dim=768, layers=12, heads=12, vocab=16384, grid=16)}


class SavedBytes:
    """Peak bytes of activations autograd holds for backward while active: distinct storages, parameters excluded,
    released when the graph that saved them is freed (after each micro-batch's backward)."""

    def __init__(self, model: torch.nn.Module):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.live, self.current, self.peak = {}, 0, 0

    def pack(self, t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr in self.params:
            return t
        if ptr not in self.live:
            self.live[ptr] = [0, t.untyped_storage().nbytes()]
            self.current += self.live[ptr][1]
            self.peak = max(self.peak, self.current)
        self.live[ptr][0] += 1
        weakref.finalize(t, self.release, ptr)
        return t

    def release(self, ptr: int) -> None:
        entry = self.live[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[ptr]

    def __enter__(self):
        self.hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self.hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self.hooks.__exit__(*exc)


def build(args, device):
    vq, policy, data, cfg = bench_setup(args)
    cfg.objective.num_generations, cfg.objective.policy_mode = args.generations, "eval"
    cfg.objective.context_noise = 0.0
    cfg.train.per_device_batch_size, cfg.train.micro_batch_size = args.images, args.micro_batch
    cfg.train.device, cfg.train.progress, cfg.train.tensorboard, cfg.train.image_steps = args.device, False, False, 0
    cfg.train.precision = args.precision
    cfg.train.output_dir = tempfile.mkdtemp(prefix="vapi-bench-")
    return Trainer(cfg, policy, vq, data), vq, policy


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="model size (gpt-b: for GPUs)")
    for name in ("dim", "layers", "heads", "vocab", "grid"):
        ap.add_argument(f"--{name}", type=int, default=None, help="override the preset")
    ap.add_argument("--images", type=int, default=4, help="B: real images per rollout batch")
    ap.add_argument("--generations", type=int, default=8, help="G")
    ap.add_argument("--micro-batch", type=int, default=16, help="sequences per micro-batch (both layouts)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 (autocast)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default); 1 is steadier on a "
                                                            "busy machine")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    device = torch.device(args.device)
    trainer, vq, policy = build(args, device)
    G, B, T = args.generations, args.images, args.grid ** 2
    print(f"GPT dim {args.dim} × {args.layers} layers, vocab {args.vocab}, T={T}; B={B} images × G={G}, "
          f"micro-batch {args.micro_batch} sequences; {args.device} {args.precision}, {torch.get_num_threads()} threads; "
          f"best of {args.repeats}")

    images, labels = next(trainer.stream)
    images, labels = images.to(device), labels.to(device)
    phases = {}
    with torch.no_grad():
        gt = vq.encode(images)
        policy.eval()
        with trainer.autocast():
            phases["tf_forward"], logits = timed(lambda: policy(labels, gt), device, args.repeats)
        phases["sampling"], (tokens, _) = timed(lambda: sample_from_logits(logits, G), device, args.repeats)
        phases["decode"], decoded = timed(lambda: vq.decode(tokens), device, args.repeats)
        target = images.repeat_interleave(G, 0)
        phases["reward"], terms = timed(lambda: trainer.method.reward.terms(decoded, target), device, args.repeats)
    rollout = teacher_forced_rollout(lambda c, x: policy(c, x), labels, gt, num_generations=G,
                                     vocab_size=args.vocab, generator=torch.Generator(device).manual_seed(0))
    advantages = group_advantages(trainer.method.reward.combine(terms), G)

    update, best, losses = {}, {"per_sample": float("inf"), "shared": float("inf")}, {}
    start = copy.deepcopy((policy.state_dict(), trainer.optimizer.state_dict(), trainer.scheduler.state_dict()))
    for layout in best:  # one counted update per layout from the same weights (hooks slow it: not timed)
        policy.load_state_dict(start[0]), trainer.optimizer.load_state_dict(start[1])
        trainer.scheduler.load_state_dict(start[2])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with SavedBytes(policy) as saved:
            losses[layout] = trainer._update(VaPiWork(rollout, advantages, layout == "shared"))["loss"]
        update[layout] = (saved.peak, torch.cuda.max_memory_allocated() if device.type == "cuda" else None)
    for _ in range(args.repeats):  # interleaved, so a busy machine slows both layouts alike
        for layout in best:
            work = VaPiWork(rollout, advantages, layout == "shared")
            seconds, _ = timed(lambda: trainer._update(work), device, 1)
            best[layout] = min(best[layout], seconds)
    update = {k: (best[k], *v) for k, v in update.items()}

    # the floor's update: one forward/backward per image (micro-batches of whole images), no optimizer
    per_image_mb = max(1, args.micro_batch // G)

    def fwd_bwd_per_image():
        for s in range(0, B, per_image_mb):
            with trainer.autocast():
                out = policy(labels[s:s + per_image_mb], gt[s:s + per_image_mb])
            out.logsumexp(-1).mean().backward()

    phases["fwd_bwd_per_image"], _ = timed(fwd_bwd_per_image, device, args.repeats)
    phases["optimizer"], _ = timed(lambda: trainer.optimizer.step(), device, args.repeats)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.method.shared_update = True
    step_time, _ = timed(trainer.step, device, args.repeats)
    with torch.no_grad(), trainer.autocast():
        free, _ = timed(lambda: generate(policy, labels.repeat_interleave(G), SamplingConfig(cfg_scale=1.0),
                                         num_tokens=T), device, args.repeats)

    floor = sum(phases.values())
    for name, t in phases.items():
        print(f"  {name:<20} {t * 1e3:9.1f} ms  ({t / floor:5.1%} of the floor)")
    for layout, (seconds, saved, peak) in update.items():
        cuda = f", CUDA peak {peak / 2**20:.0f} MiB" if peak is not None else ""
        print(f"  update {layout:<13} {seconds * 1e3:9.1f} ms, peak saved activations {saved / 2**20:7.1f} MiB{cuda}")
    print(f"  {'whole step (shared)':<20} {step_time * 1e3:9.1f} ms")
    print(f"  {'free-running gen':<20} {free * 1e3:9.1f} ms  (KV cache, {B * G} sequences × {T} tokens)")
    (t_ps, m_ps, p_ps), (t_sh, m_sh, p_sh) = update["per_sample"], update["shared"]
    print(f"  update loss per-sample {losses['per_sample']:.6f} vs shared {losses['shared']:.6f} "
          f"(|diff| {abs(losses['per_sample'] - losses['shared']):.2e})")
    print(f"ratio update time per-sample / shared:            {t_ps / t_sh:.2f}x  (target ≥ {0.7 * G:.1f})")
    print(f"ratio update activation memory per-sample/shared: {m_ps / m_sh:.2f}x  (target ≥ {0.7 * G:.1f})")
    if p_ps is not None:
        print(f"ratio update CUDA peak memory per-sample / shared: {p_ps / p_sh:.2f}x")
    print(f"ratio whole step / physical floor:                {step_time / floor:.2f}  (target ≤ 1.3)")
    tf_rollout = phases["tf_forward"] + phases["sampling"]
    print(f"ratio free-running / teacher-forced rollout:      {free / tf_rollout:.1f}x")
    print(f"ratio step with free-running / step with TF:      {(step_time - tf_rollout + free) / step_time:.1f}x")


if __name__ == "__main__":
    main()
