"""Sample-quality metrics on feature arrays: FID, Inception Score, k-NN precision/recall, class accuracy.

Pure functions of numpy/torch arrays; no network is run here (see `features.py`). Conventions follow the OpenAI
ADM evaluator (`guided-diffusion/evaluations/evaluator.py`), which AR-generation papers (LlamaGen, VA-π) report:

- FID: `|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrtm(S1 S2))`, eps=1e-6 diagonal offset when the product is
  singular, imaginary parts dropped when the diagonal's is below 1e-3.
- IS: `exp(E_x KL(p(y|x) || p(y)))` per split, over contiguous splits. ADM uses fixed 5000-sample splits
  (`split_size=5000`), the same as `splits=10` for the standard 50k samples; here `0 * log 0 = 0`, so exactly
  one-hot rows are allowed (ADM would return NaN).
- Precision/recall: Kynkäänniemi et al. (2019) manifolds with k=3, squared Euclidean distances. Departure: ADM
  computes distances in float16 when finite; here they are computed in the features' dtype (at least float32),
  so borderline samples may differ at the float16 rounding level.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from scipy.special import xlogy


def feature_statistics(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, `np.cov(rowvar=False)`) of features [N, D], in float64."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"feature_statistics needs features of shape [N>=2, D], got {feats.shape}")
    mu = feats.mean(axis=0)  # [D]
    sigma = np.cov(feats, rowvar=False)  # [D, D]
    return mu, sigma


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); mu [D], sigma [D, D]."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different shapes: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise ValueError(f"covariances {sigma1.shape}, {sigma2.shape} do not match means of shape {mu1.shape}")

    diff = mu1 - mu2  # [D]
    covmean = linalg.sqrtm(sigma1 @ sigma2)  # [D, D], possibly complex
    if not np.isfinite(covmean).all():
        warnings.warn(f"FID: singular covariance product; adding {eps} to the diagonals", stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"FID: sqrtm(sigma1 @ sigma2) has a large imaginary component "
                f"(max |imag| = {np.max(np.abs(covmean.imag)):.3g}); are both covariances PSD and finite?"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def inception_score(probs: np.ndarray, splits: int = 10, split_size: int | None = None) -> tuple[float, float]:
    """(mean, std) over `splits` contiguous chunks of exp(mean_x KL(p(y|x) || p(y))); probs [N, C] rows sum to 1.

    `split_size` instead cuts chunks of that many rows, the last one shorter (ADM: 5000, whatever N is)."""
    probs = np.asarray(probs, dtype=np.float64)
    if split_size is not None:
        if probs.ndim != 2 or probs.shape[0] < 1 or split_size < 1:
            raise ValueError(f"inception_score needs probs [N>=1, C] and split_size >= 1, got {probs.shape}")
        parts = [probs[i : i + split_size] for i in range(0, probs.shape[0], split_size)]
    elif probs.ndim != 2 or probs.shape[0] < splits:
        raise ValueError(f"inception_score needs probs [N>={splits}, C], got {probs.shape}")
    else:
        parts = np.array_split(probs, splits, axis=0)
    scores = []
    for part in parts:  # part: [n, C]
        marginal = part.mean(axis=0, keepdims=True)  # [1, C]
        kl = xlogy(part, part) - xlogy(part, marginal)  # [n, C]; 0 where part == 0
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [A, B] between rows of a [A, D] and b [B, D], clamped at 0 like ADM."""
    return (a.square().sum(1, keepdim=True) - 2.0 * a @ b.T + b.square().sum(1)[None, :]).clamp_min_(0.0)


def _as_tensor(x, device) -> torch.Tensor:
    t = torch.as_tensor(x, device=device)
    return t if t.dtype == torch.float64 else t.float()


def manifold_radii(feats, k: int = 3, batch_size: int = 10000, device=None) -> torch.Tensor:
    """Squared distance [N] from each row of feats [N, D] to its k-th nearest other row.

    The k-th neighbour excluding self is the (k+1)-th smallest distance including self (at 0), as in ADM. A running
    top-(k+1) over column blocks keeps memory at [batch_size, batch_size].
    """
    x = _as_tensor(feats, device)  # [N, D]
    n = x.shape[0]
    if not 0 < k < n:
        raise ValueError(f"precision/recall needs 0 < k < N, got k={k}, N={n}")
    radii = torch.empty(n, dtype=x.dtype, device=x.device)
    for r0 in range(0, n, batch_size):
        rows = x[r0 : r0 + batch_size]  # [b, D]
        best = torch.full((rows.shape[0], 0), float("inf"), dtype=x.dtype, device=x.device)  # [b, <=k+1]
        for c0 in range(0, n, batch_size):
            d = _sq_dists(rows, x[c0 : c0 + batch_size])  # [b, c]
            cand = torch.cat([best, d], dim=1)
            best = cand.topk(min(k + 1, cand.shape[1]), dim=1, largest=False).values
        radii[r0 : r0 + rows.shape[0]] = best[:, k]
    return radii


def precision_recall(
    real_feats, fake_feats, k: int = 3, batch_size: int = 10000, device=None
) -> tuple[float, float]:
    """ADM/Kynkäänniemi precision and recall of fake [M, D] against real [N, D] features.

    precision = fraction of fake samples inside at least one real k-NN ball;
    recall = fraction of real samples inside at least one fake k-NN ball.
    """
    real, fake = _as_tensor(real_feats, device), _as_tensor(fake_feats, device)
    dtype = torch.promote_types(real.dtype, fake.dtype)
    real, fake = real.to(dtype), fake.to(dtype)
    real_radii = manifold_radii(real, k, batch_size)  # [N]
    fake_radii = manifold_radii(fake, k, batch_size)  # [M]
    fake_in = torch.zeros(fake.shape[0], dtype=torch.bool, device=fake.device)  # [M]
    real_in = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)  # [N]
    for f0 in range(0, fake.shape[0], batch_size):
        f_sl = slice(f0, f0 + batch_size)
        for r0 in range(0, real.shape[0], batch_size):
            r_sl = slice(r0, r0 + batch_size)
            d = _sq_dists(fake[f_sl], real[r_sl])  # [bf, br]
            fake_in[f_sl] |= (d <= real_radii[None, r_sl]).any(dim=1)
            real_in[r_sl] |= (d <= fake_radii[f_sl, None]).any(dim=0)
    return float(fake_in.double().mean()), float(real_in.double().mean())


def class_accuracy(logits_or_pred, labels) -> float:
    """Top-1 accuracy from logits [N, C] (argmax over C) or predicted class ids [N], against labels [N]."""
    pred, labels = torch.as_tensor(logits_or_pred).cpu(), torch.as_tensor(labels).cpu()
    if pred.ndim == 2:
        pred = pred.argmax(dim=1)  # [N]
    if pred.shape != labels.shape:
        raise ValueError(f"class_accuracy: predictions {tuple(pred.shape)} vs labels {tuple(labels.shape)}")
    return float((pred.long() == labels.long()).double().mean())
