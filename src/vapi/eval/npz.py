"""ADM-format sample batches (`.npz`) and reference statistics.

Sample batches use the layout the OpenAI ADM evaluator reads: `arr_0` uint8 [N, H, W, 3] (NHWC, RGB) and optionally
`arr_1` int64 labels [N], written uncompressed with `np.savez` so the evaluator can stream them. Reference batches
such as `VIRTUAL_imagenet256_labeled.npz` also hold `mu`/`sigma` (pool_3, TF Inception) and `mu_s`/`sigma_s` (sFID).

`load_reference()` returns a `ReferenceStats`: the file's `mu`/`sigma` (and `mu_s`/`sigma_s`) when present, otherwise
statistics of features computed from `arr_0` or an image folder (sFID statistics too when the extractor gives spatial
features); features are also computed when an extractor is given, because precision/recall needs them. Computed
results are cached in `<cache_dir>/ref-<extractor>-<content hash>.npz`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vapi.eval.features import FeatureExtractor, compute_features
from vapi.imageio import to_uint8
from vapi.eval.metrics import feature_statistics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def save_npz(path: str | os.PathLike, images, labels=None) -> Path:
    """Write an ADM sample batch. images: uint8 [N, H, W, 3], or a tensor [N, 3, H, W] (uint8 or float in [-1, 1])."""
    if torch.is_tensor(images):
        images = to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, 3]
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"ADM npz needs uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    arrays = {"arr_0": images}
    if labels is not None:
        labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)  # [N]
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels shape {labels.shape} does not match {images.shape[0]} images")
        arrays["arr_1"] = labels
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:  # a file object keeps np.savez from appending ".npz" to the tmp name
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


class NpzWriter:
    """Write an npz array by array, and the big one batch by batch, so 50k x 256^2 images (~10 GB) never sit in
    memory. Same container as `np.savez`: an uncompressed zip of `.npy` v1.0 members (zip64), written to a temporary
    name and renamed on a clean exit.

        with NpzWriter("samples.npz") as w:
            w.begin("arr_0", (N, H, W, 3), np.uint8)
            for batch in batches: w.write(batch)   # [b, H, W, 3]
            w.add("arr_1", labels)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._member, self._left, self._item = None, 0, None

    def begin(self, key: str, shape: tuple[int, ...], dtype) -> None:
        """Start member `key` of `shape` [N, ...]; fill it with `write` calls totalling N items."""
        self._finish_member()
        dtype = np.dtype(dtype)
        self._member = self._zip.open(f"{key}.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_1_0(self._member, header)
        self._key, self._left, self._item, self._dtype = key, shape[0], tuple(shape[1:]), dtype

    def write(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch)
        if self._member is None or batch.dtype != self._dtype or batch.shape[1:] != self._item:
            raise ValueError(f"npz member {getattr(self, '_key', None)!r} expects [b, {self._item}] "
                             f"{getattr(self, '_dtype', None)}, got {batch.shape} {batch.dtype}")
        if batch.shape[0] > self._left:
            raise ValueError(f"npz member {self._key!r}: {batch.shape[0]} more items than its declared length")
        self._member.write(np.ascontiguousarray(batch).tobytes())
        self._left -= batch.shape[0]

    def add(self, key: str, array) -> None:
        """Write a whole (small) array as member `key`."""
        array = np.asarray(array)
        self.begin(key, array.shape, array.dtype)
        if array.ndim:
            self.write(array)
        else:
            self._member.write(array.tobytes())
            self._left = 0

    def _finish_member(self) -> None:
        if self._member is None:
            return
        if self._left:
            raise ValueError(f"npz member {self._key!r} is {self._left} items short of its declared length")
        self._member.close()
        self._member = None

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        ok = False
        try:
            if exc_type is None:
                self._finish_member()
                ok = True
        finally:
            if self._member is not None:
                self._member.close()
            self._zip.close()
            if ok:
                os.replace(self._tmp, self.path)
            else:
                self._tmp.unlink(missing_ok=True)


def _unreadable(path, e: BaseException) -> ValueError:
    return ValueError(f"{path}: not a readable npz ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                      "the file is corrupt, truncated or of another format")


def _np_load(path):
    """np.load (no pickles) with a one-line error naming the file."""
    try:
        return np.load(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise _unreadable(path, e) from None


def _zipfile(path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise _unreadable(path, e) from None


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a whole ADM sample batch: (images uint8 [N, H, W, 3], labels [N] or None)."""
    with _np_load(path) as z:
        return z["arr_0"], (z["arr_1"] if "arr_1" in z.files else None)


def _read_npy_header(f, where: str) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"{where} uses .npy format {version}; ADM's evaluator reads 1.0/2.0 only")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if fortran or dtype.hasobject:
        raise ValueError(f"{where} is not a C-ordered plain array")
    return shape, dtype


def _open_member(zf: zipfile.ZipFile, path, key: str):
    if f"{key}.npy" not in zf.namelist():
        raise ValueError(f"{path} has no {key!r} array (an ADM sample batch holds images in arr_0)")
    return zf.open(f"{key}.npy")


def _check_images(shape, dtype, where: str):
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"{where} is {dtype} {list(shape)}; images must be uint8 [N, H, W, 3] (0-255, RGB, as "
                         "`vapi sample` writes); convert [-1, 1] floats with vapi.imageio.to_uint8")
    return shape, dtype


def check_images_npz(path: str | os.PathLike, key: str = "arr_0") -> tuple[int, ...]:
    """The shape of `key` after checking, from its header, that it holds uint8 [N, H, W, 3] images."""
    with _zipfile(path) as zf, _open_member(zf, path, key) as f:
        return _check_images(*_read_npy_header(f, f"{path}:{key}"), f"{path}:{key}")[0]


def npz_shape(path: str | os.PathLike, key: str = "arr_0") -> tuple[int, ...]:
    """Shape of array `key` in an npz, read from its header only."""
    with _zipfile(path) as zf, _open_member(zf, path, key) as f:
        return _read_npy_header(f, f"{path}:{key}")[0]


def load_npz_labels(path: str | os.PathLike) -> np.ndarray | None:
    """The labels `arr_1` [N] of an ADM sample batch, or None, without reading the images."""
    with _np_load(path) as z:
        return z["arr_1"] if "arr_1" in z.files else None


def iter_npz_images(path: str | os.PathLike, batch_size: int, key: str = "arr_0") -> Iterator[np.ndarray]:
    """Stream `key` from an npz in batches [b, H, W, 3] without loading it whole (50k x 256^2 images are ~10 GB)."""
    with _zipfile(path) as zf, _open_member(zf, path, key) as f:
        shape, dtype = _check_images(*_read_npy_header(f, f"{path}:{key}"), f"{path}:{key}")
        per_item = int(np.prod(shape[1:])) * dtype.itemsize
        for start in range(0, shape[0], batch_size):
            n = min(batch_size, shape[0] - start)
            buf = bytearray(n * per_item)  # writable, so torch.as_tensor can share it
            if f.readinto(buf) != len(buf):
                raise ValueError(f"{path}:{key} ended early at item {start}")
            yield np.frombuffer(buf, dtype=dtype).reshape(n, *shape[1:])


def _folder_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return files


def iter_image_folder(folder: str | os.PathLike, batch_size: int) -> Iterator[np.ndarray]:
    """Images under `folder` (recursive, sorted by path) as uint8 batches [b, H, W, 3]; all must share one size
    (crop/resize them beforehand, e.g. with ADM's center crop in the data pipeline)."""
    files, size, skipped = _folder_images(Path(folder)), None, []
    for start in range(0, len(files), batch_size):
        batch = []
        for p in files[start : start + batch_size]:
            try:
                with Image.open(p) as im:
                    arr = np.asarray(im.convert("RGB"))  # [H, W, 3]
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
                skipped.append(f"{p.name}: {type(e).__name__}")
                continue
            if size is not None and arr.shape != size:
                raise ValueError(f"{p} is {arr.shape}, others are {size}; crop/resize the folder to one size")
            size = arr.shape
            batch.append(arr)
        if batch:
            yield np.stack(batch)
    if skipped:
        print(f"warning: skipped {len(skipped)} unreadable of {len(files)} files in {folder} (first: {skipped[0]})",
              file=sys.stderr)
    if size is None:
        raise ValueError(f"none of the {len(files)} image files in {folder} could be read")


def content_hash(source: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or of every image's relative path and bytes under a folder."""
    source, h = Path(source), hashlib.sha256()
    files = [source] if source.is_file() else _folder_images(source)
    for p in files:
        if source.is_dir():
            h.update(p.relative_to(source).as_posix().encode())
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


@dataclass
class ReferenceStats:
    mu: np.ndarray  # [D]
    sigma: np.ndarray  # [D, D]
    features: np.ndarray | None = None  # [N, D]; needed for precision/recall
    mu_s: np.ndarray | None = None  # [D_s] sFID statistics: the file's, or from a spatial extractor
    sigma_s: np.ndarray | None = None  # [D_s, D_s]


def _read_file_stats(path: Path) -> tuple[dict, bool]:
    """({mu, sigma[, mu_s, sigma_s]} found in the npz, whether it has images in arr_0)."""
    with _np_load(path) as z:
        stats = {k: z[k] for k in ("mu", "sigma", "mu_s", "sigma_s") if k in z.files}
        return stats, "arr_0" in z.files


def load_reference(
    source: str | os.PathLike,
    extractor: FeatureExtractor | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    prefer_file_stats: bool = True,
) -> ReferenceStats:
    """Reference statistics from an ADM npz (with or without mu/sigma) or an image folder.

    With `prefer_file_stats`, a file's own mu/sigma win over statistics of freshly computed features (ADM's numbers
    come from TF Inception, which the torch port matches closely but not bit-exactly).
    """
    source = Path(source)
    file_stats, has_images = _read_file_stats(source) if source.is_file() else ({}, True)
    have_file_stats = "mu" in file_stats and "sigma" in file_stats
    if extractor is None or not has_images:
        if not have_file_stats:
            raise ValueError(f"{source} has no mu/sigma; pass a feature extractor to compute reference statistics")
        return ReferenceStats(file_stats["mu"], file_stats["sigma"], None, file_stats.get("mu_s"),
                              file_stats.get("sigma_s"))

    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"ref-{extractor.name}-{content_hash(source)[:16]}.npz"
    want_spatial = bool(getattr(extractor, "spatial", False))
    cached = {}
    if cache is not None and cache.is_file():
        try:
            with _np_load(cache) as z:
                cached = {k: z[k] for k in z.files}
        except (ValueError, KeyError, OSError) as e:  # a damaged cache entry is recomputed, not fatal
            print(f"warning: ignoring the damaged statistics cache {cache} ({e})", file=sys.stderr)
            cached = {}
    if cached and (not want_spatial or "mu_s" in cached):  # a cache without sFID stats is redone when asked for
        feats, mu, sigma = cached["features"], cached["mu"], cached["sigma"]
        mu_s, sigma_s = cached.get("mu_s"), cached.get("sigma_s")
    else:
        batches = iter_npz_images(source, batch_size) if source.is_file() else iter_image_folder(source, batch_size)
        feats, _, spatial = compute_features(extractor, batches, batch_size, return_spatial=True)  # [N, D], [N, D_s]
        mu, sigma = feature_statistics(feats)
        mu_s, sigma_s = feature_statistics(spatial) if spatial is not None else (None, None)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + ".tmp")
            extra = {"mu_s": mu_s, "sigma_s": sigma_s} if mu_s is not None else {}
            with open(tmp, "wb") as f:
                np.savez(f, features=feats, mu=mu, sigma=sigma, **extra)
            os.replace(tmp, cache)

    if have_file_stats and prefer_file_stats:
        if file_stats["mu"].shape[0] != feats.shape[1]:
            raise ValueError(
                f"{source} holds D={file_stats['mu'].shape[0]} statistics but {extractor.name} gives "
                f"D={feats.shape[1]} features; pass prefer_file_stats=False to use the extractor's own statistics"
            )
        mu, sigma = file_stats["mu"], file_stats["sigma"]
        if "mu_s" in file_stats and "sigma_s" in file_stats:
            mu_s, sigma_s = file_stats["mu_s"], file_stats["sigma_s"]
    return ReferenceStats(mu, sigma, feats, mu_s, sigma_s)
