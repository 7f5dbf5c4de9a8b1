"""Combine sample features and reference statistics into one metrics dict; print and save it.

    ref = load_reference("VIRTUAL_imagenet256_labeled.npz", extractor, cache_dir=".cache/vapi")
    feats, logits = compute_features(extractor, iter_npz_images("samples.npz", 64), 64)
    results = evaluate(feats, ref, sample_logits=logits)
    print(format_table(results)); write_json(results, "eval.json")

or, from files, as `vapi eval` does: `evaluate_files("samples.npz", "VIRTUAL_imagenet256_labeled.npz", extractor)`.

Keys: num_samples, fid; is / is_std (with logits); precision / recall (with reference features); sfid (with spatial
features and reference sFID statistics); accuracy (with logits and labels, for class-aligned classifiers only:
Inception's 1008 outputs are not ImageNet label ids).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from vapi.eval.metrics import (
    class_accuracy,
    feature_statistics,
    frechet_distance,
    inception_score,
    precision_recall,
)
from vapi.eval.features import FeatureExtractor, compute_features
from vapi.eval.npz import (ReferenceStats, check_images_npz, iter_image_folder, iter_npz_images, load_npz_labels,
                           load_reference, npz_shape)

ADM_IS_SPLIT_SIZE = 5000  # ADM's evaluator scores IS over consecutive chunks of 5000 samples


def evaluate(
    sample_feats: np.ndarray,
    ref: ReferenceStats,
    *,
    sample_logits: np.ndarray | None = None,
    sample_labels: np.ndarray | None = None,
    sample_spatial: np.ndarray | None = None,
    k: int = 3,
    is_splits: int = 10,
    is_split_size: int | None = None,
    pr_batch_size: int = 10000,
    device: str | torch.device | None = None,
) -> dict[str, float | int]:
    """Metrics of samples (features [N, D], logits [N, C], labels [N], spatial features [N, D_s]) against `ref`."""
    mu, sigma = feature_statistics(sample_feats)
    results: dict[str, float | int] = {
        "num_samples": int(len(sample_feats)),
        "fid": frechet_distance(mu, sigma, ref.mu, ref.sigma),
    }
    if sample_logits is not None:
        probs = torch.softmax(torch.as_tensor(sample_logits, dtype=torch.float64), dim=1).numpy()  # [N, C]
        results["is"], results["is_std"] = inception_score(probs, splits=is_splits, split_size=is_split_size)
        if sample_labels is not None:
            results["accuracy"] = class_accuracy(sample_logits, sample_labels)
    if ref.features is not None:
        results["precision"], results["recall"] = precision_recall(
            ref.features, sample_feats, k=k, batch_size=pr_batch_size, device=device
        )
    if sample_spatial is not None and ref.mu_s is not None:
        mu_s, sigma_s = feature_statistics(sample_spatial)
        results["sfid"] = frechet_distance(mu_s, sigma_s, ref.mu_s, ref.sigma_s)
    return results


def evaluate_files(
    samples: str | os.PathLike,
    ref: str | os.PathLike,
    extractor: FeatureExtractor,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    prefer_file_stats: bool = True,
    use_labels: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, float | int]:
    """Metrics of a sample batch (ADM npz or image folder) against a reference (ADM npz with mu/sigma, any npz with
    images, or an image folder; computed statistics are cached in `cache_dir`), with ADM's IS splits.

    `prefer_file_stats`: use the reference file's mu/sigma (and mu_s/sigma_s) rather than statistics of its images
    under `extractor` (right for the real TF-ported Inception only). `use_labels`: report class accuracy from the
    npz's arr_1 (class-aligned feature networks only). `device` is where precision/recall distances run.
    """
    samples = Path(samples)
    if not samples.exists():
        raise FileNotFoundError(f"sample batch not found: {samples}")
    if not Path(ref).exists():
        raise FileNotFoundError(f"reference batch not found: {ref}")
    if samples.is_file():
        check_images_npz(samples)  # before the reference's features are computed
    ref_stats = load_reference(ref, extractor, cache_dir=cache_dir, batch_size=batch_size,
                               prefer_file_stats=prefer_file_stats)
    labels = None
    if samples.is_file():
        batches, total = iter_npz_images(samples, batch_size), npz_shape(samples)[0]
        labels = load_npz_labels(samples) if use_labels else None
    else:
        batches, total = iter_image_folder(samples, batch_size), None
    feats, logits, spatial = compute_features(extractor, batches, batch_size, total=total, progress=progress,
                                              return_spatial=True)  # [N, D], [N, C] | None, [N, D_s] | None
    for message in sample_count_warnings(feats.shape[0], feats.shape[1], logits is not None):
        print(f"warning: {message}", file=sys.stderr)
    return evaluate(feats, ref_stats, sample_logits=logits, sample_labels=labels, sample_spatial=spatial,
                    is_split_size=ADM_IS_SPLIT_SIZE, device=device)


def sample_count_warnings(n: int, dim: int, with_is: bool) -> list[str]:
    """What N samples cannot support: a full-rank FID covariance needs N > D; IS wants whole 5000-sample splits."""
    out = []
    if n <= dim:
        out.append(f"FID on {n} samples with {dim}-dim features: the sample covariance is rank-deficient, so FID is "
                   f"biased and not comparable (ADM uses 50000; use at least {dim + 1})")
    if with_is and n < ADM_IS_SPLIT_SIZE:
        out.append(f"IS on {n} samples: below one {ADM_IS_SPLIT_SIZE}-sample split, not comparable to ADM's numbers")
    return out


def format_table(results: dict[str, float | int]) -> str:
    """Two aligned columns, metric and value (4 decimals for floats)."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in results.items()]
    kw = max([len("metric")] + [len(k) for k, _ in rows])
    vw = max([len("value")] + [len(v) for _, v in rows])
    lines = [f"{'metric':<{kw}}  {'value':>{vw}}", f"{'-' * kw}  {'-' * vw}"]
    lines += [f"{k:<{kw}}  {v:>{vw}}" for k, v in rows]
    return "\n".join(lines)


def write_json(results: dict[str, float | int], path: str | os.PathLike) -> Path:
    """Write results as pretty JSON (keys in insertion order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
