"""Images per second of the training data stream with 0 and N DataLoader workers, side by side.

Writes a folder of JPEGs (decoded and ADM-center-cropped by `ImageFolderDataset`, as in training), then times
`BatchStream` (the trainer's data source) with `num_workers` 0 and N, optionally with a simulated training step of
`--step-ms` per batch during which workers decode ahead (the realistic case: decoding overlaps the GPU work).

    python benchmarks/bench_dataloader.py                         # 256 px, 0 vs 2 workers
    python benchmarks/bench_dataloader.py --source-size 500 --image-size 384 --workers 8 --step-ms 200
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vapi.data.images import ImageFolderDataset
from vapi.training.state import BatchStream


def write_images(root: Path, n: int, size: int, classes: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        # smooth noise: JPEG-compressible like photos, not a flat colour that decodes instantly
        small = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size * 4 // 3, size), Image.BICUBIC).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def images_per_second(dataset, workers: int, batch: int, batches: int, step_s: float) -> float:
    start = time.perf_counter()  # worker start-up included: the workers' prefetch is not free time
    stream = BatchStream(dataset, batch, seed=0, num_workers=workers)
    for _ in range(batches):
        next(stream)
        if step_s:
            time.sleep(step_s)  # the training step the workers overlap with
    elapsed = time.perf_counter() - start
    stream.close()
    return batches * batch / elapsed


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=256, help="images written to the temporary folder")
    p.add_argument("--source-size", type=int, default=375, help="height of the written JPEGs (ImageNet-like)")
    p.add_argument("--image-size", type=int, default=256, help="training resolution (center crop)")
    p.add_argument("--batch", type=int, default=16, help="per_device_batch_size")
    p.add_argument("--batches", type=int, default=24, help="batches timed per setting")
    p.add_argument("--workers", type=int, default=2, help="worker count compared with 0")
    p.add_argument("--step-ms", type=float, default=0.0, help="simulated training step per batch (ms)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_images(Path(tmp), args.images, args.source_size)
        dataset = ImageFolderDataset(root, args.image_size)
        rates = {w: images_per_second(dataset, w, args.batch, args.batches, args.step_ms / 1000)
                 for w in (0, args.workers)}
    print(f"{args.images} JPEGs of {args.source_size} px → {args.image_size} px crops, batch {args.batch}, "
          f"simulated step {args.step_ms:g} ms")
    print(f"{'workers':>8} {'images/s':>10}")
    for w, rate in rates.items():
        print(f"{w:>8} {rate:>10.1f}")
    print(f"speed-up with {args.workers} workers: {rates[args.workers] / rates[0]:.2f}x")


if __name__ == "__main__":
    main()
