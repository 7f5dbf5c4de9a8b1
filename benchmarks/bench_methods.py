"""One training step of every method on the same model and batch, side by side: what each costs next to VA-π.

For vapi, ce, ste, tokenizer and grpo in turn (each in its own process, from the same initial weights and the same
batches of B real images): the best of `--repeats` whole `Trainer.step()` calls after one warm-up step, as time per
real image and per trained sequence, and the peak memory a step adds to the footprint of models, optimizer state and
data (CUDA: `max_memory_allocated`; CPU: resident memory sampled every millisecond, since torch's CPU allocator is
invisible to tracemalloc, whose Python-side peak goes to the JSON rows). The paper's cost column, for comparison:
VA-π 25, post-trained tokenizer 18, STE 381, AR-GRPO 149 minutes (1 : 0.72 : 15.2 : 6.0); its runs differ in steps
and hardware, this bench in nothing but the method.

    python benchmarks/bench_methods.py                                 # CPU-sized defaults
    python benchmarks/bench_methods.py --dim 768 --layers 12 --vocab 16384 --grid 16 --images 8 --device cuda

Rewards: MSE + LPIPS (random AlexNet backbone: timing only) for vapi / ste / tokenizer; grpo, which has no real image,
scores brightness (a user `module:function` reward) after generating with CFG 2, so its reward is cheaper than theirs.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path

import torch

from timing import bench_setup, timed
from vapi.training.trainer import Trainer

METHODS = ("vapi", "ce", "ste", "tokenizer", "grpo")
PAPER_MINUTES = {"vapi": 25, "tokenizer": 18, "ste": 381, "grpo": 149}


def brightness(images, targets, condition):
    """The grpo bench reward: mean brightness [N]."""
    return images.mean(dim=(1, 2, 3))


def _rss_mib() -> float:
    """The process's resident memory now (Linux /proc), else its peak so far."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class RssPeak:
    """Samples the resident memory every millisecond in a thread; `peak` is the highest value seen. torch's CPU
    tensors of any size are mmap-backed and unmapped when freed, so resident memory follows live tensors."""

    def __enter__(self):
        self.peak, self._stop = _rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def measure(args, name: str) -> dict:
    device = torch.device(args.device)
    vq, policy, data, cfg = bench_setup(args)
    cfg.objective.num_generations = cfg.grpo.num_generations = args.generations
    if name == "grpo":
        cfg.reward.mse, cfg.reward.lpips, cfg.reward.functions = 0.0, 0.0, ["__main__:brightness"]
    cfg.train.per_device_batch_size = args.images
    cfg.train.micro_batch_size = args.micro_batch
    cfg.train.device, cfg.train.progress, cfg.train.tensorboard = args.device, False, False
    cfg.train.image_steps, cfg.train.output_dir = 0, tempfile.mkdtemp(prefix="vapi-bench-methods-")
    trainer = Trainer(cfg, policy, vq, data)
    trainer.step()  # warm-up (allocator, kernels, lazy init, AdamW state)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else _rss_mib()  # before the step
    tracemalloc.start()
    with RssPeak() as rss:
        seconds, _ = timed(trainer.step, device, args.repeats)
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = rss.peak - base
    B, rows = args.images, cfg.rows_per_image
    return {"method": name, "step_s": seconds, "per_image_s": seconds / B, "per_sequence_s": seconds / (B * rows),
            "sequences": B * rows, "peak_mib": peak, "python_peak_mib": py_peak / 2**20,
            "trained_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--grid", type=int, default=8, help="token grid side: T = grid²")
    ap.add_argument("--images", type=int, default=4, help="B: real images per step")
    ap.add_argument("--generations", type=int, default=8, help="G of vapi and grpo")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # internal: measure one method in this process
    args = ap.parse_args(argv)
    if args.only:
        print(json.dumps(measure(args, args.only)))
        return
    rows = []
    for name in args.methods.split(","):  # one process per method: peak memory of its own
        cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--only", name]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"GPT dim {args.dim} × {args.layers} layers, vocab {args.vocab}, T={args.grid**2}, B={args.images}, "
          f"G={args.generations}, {args.device}, best of {args.repeats}")
    ref = next((r for r in rows if r["method"] == "vapi"), rows[0])
    print(f"{'method':<10} {'step s':>8} {'s/image':>9} {'s/seq':>9} {'seqs':>5} {'peak MiB':>9} {'× vapi':>7} "
          f"{'paper ×':>8}")
    for r in rows:
        paper = PAPER_MINUTES.get(r["method"])
        paper_ratio = f"{paper / PAPER_MINUTES['vapi']:.2f}" if paper else "-"
        print(f"{r['method']:<10} {r['step_s']:8.3f} {r['per_image_s']:9.4f} {r['per_sequence_s']:9.5f} "
              f"{r['sequences']:5d} {r['peak_mib']:9.1f} {r['step_s'] / ref['step_s']:7.2f} {paper_ratio:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
