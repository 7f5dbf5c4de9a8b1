"""Mass sampling for FID: N class-conditional images into a PNG folder and an ADM `.npz`, resumable and shardable.

Protocol (LlamaGen's `sample_c2i_ddp.py`, which VA-π's numbers use): labels uniform-random over the classes, KV-cache
generation with CFG, VQ decode at the model's resolution, optional bicubic resize of the float image (384 → 256,
`F.interpolate(mode="bicubic")`, no antialias) and uint8 as `clamp(127.5 x + 128)`, one PNG per sample, then one
uint8 NHWC npz for the ADM evaluator. Departures, both for reproducibility at scale:

- Sample i depends only on (seed, i): its label and its per-token sampling noise come from
  `numpy.random.default_rng([seed, i, stream])`, and tokens are drawn by inverse CDF on that noise
  (`vapi.sampling.generate(uniforms=...)`) rather than from one batch-wide RNG stream. So a rerun, a different
  batch size, or any split over processes gives the same images (up to floating-point reduction order on GPUs).
- "balanced" labels (`i % num_classes`: exactly N / C per class when C divides N) are offered next to "uniform".

Layout of `out_dir`:
    sampling.json            settings that determine the images; a rerun with different ones is refused
    samples/000000.png ...   sample i at samples/{i:06d}.png
    shards/00003.done        shard 3 (indices [3 S, 4 S)) is complete: written after all its PNGs
    samples.npz              arr_0 uint8 [N, H, W, 3], arr_1 int64 labels [N]; written last (`write_samples_npz`)

Sharding: shard k holds indices [k S, (k+1) S); process `rank` of `world_size` does shards k ≡ rank (mod world_size)
(`rank_shards`). A shard is skipped when its marker and all its PNGs exist, so a killed run resumes where it stopped.

    bundle = build_generator_and_tokenizer("c2i_XXL_384.pt", "vq_ds16_c2i.pt")
    sample_many(bundle, "out/", 50_000, SamplingConfig(cfg_scale=1.75, top_k=0), resize=256)
    write_samples_npz("out/", 50_000)
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from vapi.eval.npz import NpzWriter
from vapi.imageio import to_uint8
from vapi.sampling import SamplingConfig, sample_images

LABEL_MODES = ("uniform", "balanced")
_LABEL_STREAM, _NOISE_STREAM = 0, 1  # independent RNG streams per sample index
MANIFEST = "sampling.json"


# ---------------------------------------------------------------- per-sample randomness and sharding
def sample_labels(indices, num_classes: int, mode: str = "uniform", seed: int = 0) -> np.ndarray:
    """Class id [n] int64 of each global sample index: uniform from (seed, i), or balanced `i % num_classes`."""
    indices = np.asarray(list(indices), dtype=np.int64)
    if mode == "balanced":
        return indices % num_classes
    if mode != "uniform":
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {mode!r}")
    return np.array([np.random.default_rng([seed, int(i), _LABEL_STREAM]).integers(num_classes) for i in indices],
                    dtype=np.int64)


def sample_uniforms(indices, num_tokens: int, seed: int = 0) -> torch.Tensor:
    """Per-token sampling noise [n, num_tokens] in [0, 1) of each global sample index, from (seed, i) alone."""
    rows = [np.random.default_rng([seed, int(i), _NOISE_STREAM]).random(num_tokens) for i in indices]
    return torch.from_numpy(np.stack(rows)).float()  # [n, T]


def shard_ranges(num_samples: int, shard_size: int) -> list[range]:
    """Shard k = global indices [k * shard_size, min((k + 1) * shard_size, num_samples))."""
    if num_samples < 1 or shard_size < 1:
        raise ValueError(f"need num_samples >= 1 and shard_size >= 1, got {num_samples}, {shard_size}")
    return [range(s, min(s + shard_size, num_samples)) for s in range(0, num_samples, shard_size)]


def rank_shards(num_shards: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The shards process `rank` of `world_size` generates: round-robin, so ranks finish at about the same time."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    return list(range(rank, num_shards, world_size))


def resize_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bicubic resize of float images [B, 3, H, W] to size x size, as LlamaGen's eval protocol (no-op when None)."""
    if size is None or images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic")


# ---------------------------------------------------------------- folder layout
def sample_path(out_dir: str | os.PathLike, index: int) -> Path:
    return Path(out_dir) / "samples" / f"{index:06d}.png"


def _marker(out_dir: Path, shard: int) -> Path:
    return out_dir / "shards" / f"{shard:05d}.done"


def shard_done(out_dir: str | os.PathLike, shard: int, indices: range) -> bool:
    """True when the shard's marker records exactly `indices` and every PNG of it exists."""
    out_dir, marker = Path(out_dir), _marker(Path(out_dir), shard)
    try:
        rec = json.loads(marker.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if (rec.get("start"), rec.get("stop")) != (indices.start, indices.stop):
        return False
    return all(sample_path(out_dir, i).is_file() for i in indices)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _flat(d: dict, prefix: str = "") -> dict:
    """{"sampling": {"cfg_scale": 4}} -> {"sampling.cfg_scale": 4}, so a mismatch names the one differing field."""
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_manifest(out_dir: str | os.PathLike, settings: dict) -> None:
    """Record `settings` in out_dir/sampling.json, or refuse when the folder was sampled with different ones:
    resuming would otherwise mix images of two configurations in one FID batch."""
    path = Path(out_dir) / MANIFEST
    settings = _flat(json.loads(json.dumps(settings)))  # JSON round trip: tuples -> lists, as read back
    if path.is_file():
        old = _flat(json.loads(path.read_text()))
        diff = [f"{k}: {old.get(k)!r} there, {settings.get(k)!r} now" for k in sorted(set(old) | set(settings))
                if old.get(k) != settings.get(k)]
        if diff:
            raise ValueError(f"{out_dir} holds samples made with other settings ({'; '.join(diff)}); "
                             f"use a new --out-dir or delete that folder")
        return
    _write_atomic(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------- sampling
@dataclass
class SampleManyResult:
    out_dir: Path
    shards_done: int  # shards generated by this call
    shards_skipped: int  # shards of this rank found complete
    images: int  # images generated by this call
    seconds: float


def sample_many(bundle, out_dir: str | os.PathLike, num_samples: int, sampling: SamplingConfig, *, seed: int = 0,
                labels: str = "uniform", shard_size: int = 500, batch_size: int = 32, resize: int | None = None,
                rank: int = 0, world_size: int = 1, settings: dict | None = None,
                progress: bool = True) -> SampleManyResult:
    """Generate this rank's unfinished shards of `num_samples` images into `out_dir` (layout in the module doc).

    `bundle` is a PolicyBundle: `policy` (c2i, LlamaGen-like), `tokenizer` and `image_size`. `settings`
    (e.g. checkpoint paths) joins the manifest, so a rerun against other weights is refused.
    """
    policy = bundle.policy
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, got {labels!r}")
    out_dir = Path(out_dir)
    num_classes, num_tokens = policy.config.num_classes, policy.num_image_tokens
    check_manifest(out_dir, {"seed": seed, "labels": labels, "num_classes": num_classes, "shard_size": shard_size,
                             "image_size": bundle.image_size, "resize": resize,
                             "sampling": dataclasses.asdict(sampling), **(settings or {})})
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    shards = shard_ranges(num_samples, shard_size)
    mine = rank_shards(len(shards), rank, world_size)
    todo = [k for k in mine if not shard_done(out_dir, k, shards[k])]
    device = next(policy.parameters()).device
    t0, images = time.perf_counter(), 0
    bar = tqdm(total=sum(len(shards[k]) for k in todo), unit="img", desc=f"sampling (rank {rank})",
               disable=not progress)
    for k in todo:
        indices = shards[k]
        ys = torch.from_numpy(sample_labels(indices, num_classes, labels, seed))  # [S]
        for b0 in range(0, len(indices), batch_size):
            idx = indices[b0: b0 + batch_size]
            noise = sample_uniforms(idx, num_tokens, seed)  # [b, T]
            x = sample_images(policy, bundle.tokenizer, ys[b0: b0 + len(idx)].to(device), sampling, uniforms=noise,
                              clamp=False)
            x = resize_images(x, resize)  # [b, 3, H', W'] ~[-1, 1]
            arr = to_uint8(x).permute(0, 2, 3, 1).cpu().numpy()  # [b, H', W', 3]
            for i, img in zip(idx, arr):
                Image.fromarray(img).save(sample_path(out_dir, i))
            images += len(idx)
            bar.update(len(idx))
        _write_atomic(_marker(out_dir, k), json.dumps({"start": indices.start, "stop": indices.stop}) + "\n")
    bar.close()
    return SampleManyResult(out_dir, len(todo), len(mine) - len(todo), images, time.perf_counter() - t0)


def missing_shards(out_dir: str | os.PathLike, num_samples: int) -> list[int]:
    """Shards of `num_samples` that are not complete yet (under the shard size recorded in the manifest)."""
    out_dir = Path(out_dir)
    shard_size = json.loads((out_dir / MANIFEST).read_text())["shard_size"]
    return [k for k, r in enumerate(shard_ranges(num_samples, shard_size)) if not shard_done(out_dir, k, r)]


def wait_for_shards(out_dir: str | os.PathLike, num_samples: int, poll_s: float = 10.0,
                    timeout_s: float | None = None) -> None:
    """Block until every shard is complete (the other ranks' work, under torchrun); TimeoutError after timeout_s."""
    start = time.monotonic()
    while missing := missing_shards(out_dir, num_samples):
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{len(missing)} shards of {out_dir} still unfinished (first: {missing[0]})")
        time.sleep(poll_s)


def write_samples_npz(out_dir: str | os.PathLike, num_samples: int, path: str | os.PathLike | None = None,
                      batch_size: int = 256, workers: int = 8) -> Path:
    """Stream samples/000000.png ... into an ADM npz (arr_0 uint8 [N, H, W, 3], arr_1 labels [N]) without holding
    all N images in memory; labels are recomputed from the manifest's seed and label mode."""
    out_dir = Path(out_dir)
    missing = missing_shards(out_dir, num_samples)
    if missing:
        raise ValueError(f"{out_dir}: {len(missing)} shards are unfinished (first: shard {missing[0]}); "
                         f"run `vapi sample` again to complete them")
    manifest = json.loads((out_dir / MANIFEST).read_text())
    labels = sample_labels(range(num_samples), manifest["num_classes"], manifest["labels"], manifest["seed"])

    def read(i: int) -> np.ndarray:
        with Image.open(sample_path(out_dir, i)) as im:
            return np.asarray(im.convert("RGB"))  # [H, W, 3]

    path = Path(path) if path is not None else out_dir / "samples.npz"
    first = read(0)
    with NpzWriter(path) as writer, ThreadPoolExecutor(workers) as pool:  # PNG decoding releases the GIL
        writer.begin("arr_0", (num_samples, *first.shape), np.uint8)
        for b0 in range(0, num_samples, batch_size):
            batch = np.stack(list(pool.map(read, range(b0, min(b0 + batch_size, num_samples)))))  # [b, H, W, 3]
            writer.write(batch)
        writer.add("arr_1", labels)
    return path
