"""Combine sample features and reference statistics into one metrics dict; print and save it.

    ref = load_reference("VIRTUAL_imagenet256_labeled.npz", extractor, cache_dir=".cache/vapi")
    feats, logits = compute_features(extractor, iter_npz_images("samples.npz", 64), 64)
    results = evaluate(feats, ref, sample_logits=logits)
    print(format_table(results)); write_json(results, "eval.json")

Keys: num_samples, fid; is / is_std (with logits); precision / recall (with reference features); sfid (with spatial
features and reference sFID statistics); accuracy (with logits and labels, for class-aligned classifiers only:
Inception's 1008 outputs are not ImageNet label ids).
"""

from __future__ import annotations

import json
import os
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
from vapi.eval.npz import ReferenceStats


def evaluate(
    sample_feats: np.ndarray,
    ref: ReferenceStats,
    *,
    sample_logits: np.ndarray | None = None,
    sample_labels: np.ndarray | None = None,
    sample_spatial: np.ndarray | None = None,
    k: int = 3,
    is_splits: int = 10,
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
        results["is"], results["is_std"] = inception_score(probs, splits=is_splits)
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
