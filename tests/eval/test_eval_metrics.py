"""FID / IS / precision-recall / accuracy checked against independent computations and closed forms."""

import numpy as np
import pytest
import torch

from vapi.eval.metrics import (
    class_accuracy,
    feature_statistics,
    frechet_distance,
    inception_score,
    manifold_radii,
    precision_recall,
)


def _random_gaussian(rng, d):
    a = rng.standard_normal((d, d))
    return rng.standard_normal(d), a @ a.T / d + 0.1 * np.eye(d)  # mu [D], SPD sigma [D, D]


def _fd_by_eigh(mu1, s1, mu2, s2):
    """Independent FD: tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), the symmetric form, via eigh."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    lam = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(lam, 0, None))))


def test_frechet_distance_matches_eigh_reference():
    rng = np.random.default_rng(0)
    for d in (2, 16, 64):
        (mu1, s1), (mu2, s2) = _random_gaussian(rng, d), _random_gaussian(rng, d)
        got, want = frechet_distance(mu1, s1, mu2, s2), _fd_by_eigh(mu1, s1, mu2, s2)
        assert got == pytest.approx(want, rel=1e-6)


def test_frechet_distance_diagonal_closed_form():
    # sum (mu1-mu2)^2 + sum (sqrt a - sqrt b)^2 = 2 * 1 + (1-2)^2 + (2-3)^2 = 4
    got = frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.ones(2), np.diag([4.0, 9.0]))
    assert got == pytest.approx(4.0, rel=1e-12)


def test_fid_of_set_against_itself_is_zero():
    feats = np.random.default_rng(1).standard_normal((500, 64)) * 3 + 1  # [N, D]
    mu, sigma = feature_statistics(feats)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_feature_statistics_matches_numpy():
    feats = np.random.default_rng(2).standard_normal((50, 5)).astype(np.float32)
    mu, sigma = feature_statistics(feats)
    np.testing.assert_allclose(mu, feats.astype(np.float64).mean(0))
    np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False))
    with pytest.raises(ValueError):
        feature_statistics(feats[:1])


def test_frechet_distance_rejects_large_imaginary_part():
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, 1.0]), np.zeros(2), np.diag([-1.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_inception_score_closed_forms():
    uniform = np.full((100, 10), 0.1)
    assert inception_score(uniform, splits=10) == pytest.approx((1.0, 0.0), abs=1e-12)
    onehot = np.eye(10)[np.arange(200) % 10]  # every split of 20 rows holds each class twice
    assert inception_score(onehot, splits=10) == pytest.approx((10.0, 0.0), abs=1e-9)
    # hand computation: p = [1, 0], [.5, .5]; marginal [.75, .25];
    # KL = log(4/3) = 0.287682, .5 log(2/3) + .5 log 2 = 0.143841; exp(mean) = exp(0.215762) = 1.240806
    mean, _ = inception_score(np.array([[1.0, 0.0], [0.5, 0.5]]), splits=1)
    assert mean == pytest.approx(1.240806, rel=1e-6)


def _brute_pr(real, fake, k):
    d_rr = ((real[:, None] - real[None]) ** 2).sum(-1)  # [N, N]
    d_ff = ((fake[:, None] - fake[None]) ** 2).sum(-1)  # [M, M]
    d_fr = ((fake[:, None] - real[None]) ** 2).sum(-1)  # [M, N]
    r_real = np.sort(d_rr, axis=1)[:, k]  # k-th neighbour, self at index 0
    r_fake = np.sort(d_ff, axis=1)[:, k]
    precision = np.mean([(d_fr[i] <= r_real).any() for i in range(len(fake))])
    recall = np.mean([(d_fr[:, j] <= r_fake).any() for j in range(len(real))])
    return precision, recall


@pytest.mark.parametrize("shift", [0.0, 0.7, 1.5])
def test_precision_recall_matches_brute_force(shift):
    rng = np.random.default_rng(3)
    real = rng.standard_normal((60, 8))  # [N, D]
    fake = rng.standard_normal((47, 8)) * 0.8 + shift  # [M, D]
    want = _brute_pr(real, fake, k=3)
    got = precision_recall(real, fake, k=3, batch_size=16)  # 16 does not divide 60 or 47
    assert got == pytest.approx(want, abs=0)
    assert 0.0 < want[0] < 1.0 and 0.0 < want[1] < 1.0  # non-trivial cases


def test_precision_recall_identical_and_disjoint_sets():
    feats = np.random.default_rng(4).standard_normal((40, 6)).astype(np.float32)
    assert precision_recall(feats, feats.copy(), k=3, batch_size=7) == (1.0, 1.0)
    assert precision_recall(feats, feats + 100.0, k=3, batch_size=7) == (0.0, 0.0)


def test_manifold_radii_batching_matches_single_block():
    feats = np.random.default_rng(5).standard_normal((33, 4))
    full = manifold_radii(feats, k=3, batch_size=1000)
    # equal up to BLAS blocking (ulp level)
    np.testing.assert_allclose(manifold_radii(feats, k=3, batch_size=5).numpy(), full.numpy(), rtol=1e-12)
    with pytest.raises(ValueError):
        manifold_radii(feats[:3], k=3)


def test_class_accuracy():
    logits = torch.tensor([[2.0, 0.1], [0.0, 1.0], [3.0, -1.0], [0.0, 5.0]])
    labels = np.array([0, 1, 1, 1])
    assert class_accuracy(logits, labels) == 0.75
    assert class_accuracy(np.array([0, 1, 1, 1]), labels) == 1.0
