"""ADM npz layout, streaming reads, reference statistics and their cache."""

import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vapi.eval.features import compute_features
from vapi.eval.metrics import feature_statistics
from vapi.eval.npz import iter_npz_images, load_npz, load_reference, save_npz


class MeanColorExtractor:
    """Features = per-channel mean and std of the uint8 image [N, 6]; counts its calls."""

    name = "mean-color"

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        x = images.float()  # [N, 3, H, W]
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], dim=1), None


def _uint8_images(n=10, h=8, w=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)  # [N, H, W, 3]


def test_npz_round_trip_adm_layout(tmp_path):
    imgs = torch.rand(5, 3, 8, 6) * 2 - 1  # [N, 3, H, W] float in [-1, 1]
    path = save_npz(tmp_path / "samples.npz", imgs, labels=torch.arange(5))
    with np.load(path) as z:  # what ADM's evaluator reads
        assert sorted(z.files) == ["arr_0", "arr_1"]
        assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (5, 8, 6, 3)
        expected = (127.5 * imgs + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(z["arr_0"], expected)
        np.testing.assert_array_equal(z["arr_1"], np.arange(5))
    with zipfile.ZipFile(path) as zf, zf.open("arr_0.npy") as f:  # ADM streams: .npy v1/v2 header, C order
        version = np.lib.format.read_magic(f)
        assert version in ((1, 0), (2, 0))
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        assert (shape, fortran, dtype) == ((5, 8, 6, 3), False, np.dtype(np.uint8))
    arr = _uint8_images()
    save_npz(tmp_path / "plain.npz", arr)
    loaded, labels = load_npz(tmp_path / "plain.npz")
    np.testing.assert_array_equal(loaded, arr)
    assert labels is None
    streamed = np.concatenate(list(iter_npz_images(tmp_path / "plain.npz", batch_size=3)))
    np.testing.assert_array_equal(streamed, arr)
    with pytest.raises(ValueError):
        save_npz(tmp_path / "bad.npz", arr.astype(np.float32))


def test_reference_from_file_stats(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3)
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma, mu_s=mu + 1, sigma_s=2 * sigma)
    ref = load_reference(tmp_path / "ref.npz")
    np.testing.assert_array_equal(ref.mu, mu)
    np.testing.assert_array_equal(ref.sigma_s, 2 * sigma)
    assert ref.features is None
    np.savez(tmp_path / "images_only.npz", arr_0=_uint8_images())
    with pytest.raises(ValueError, match="mu/sigma"):
        load_reference(tmp_path / "images_only.npz")


def test_reference_computed_cached_and_folder_equivalent(tmp_path):
    arr = _uint8_images()
    save_npz(tmp_path / "ref.npz", arr)
    ext = MeanColorExtractor()
    ref = load_reference(tmp_path / "ref.npz", ext, cache_dir=tmp_path / "cache", batch_size=4)
    feats, _ = compute_features(ext, arr, batch_size=4, progress=False)
    np.testing.assert_allclose(ref.features, feats)
    mu, sigma = feature_statistics(feats)
    np.testing.assert_allclose(ref.mu, mu)
    np.testing.assert_allclose(ref.sigma, sigma)
    assert len(list((tmp_path / "cache").glob("ref-mean-color-*.npz"))) == 1

    ext.calls = 0
    cached = load_reference(tmp_path / "ref.npz", ext, cache_dir=tmp_path / "cache")
    assert ext.calls == 0
    np.testing.assert_array_equal(cached.sigma, ref.sigma)

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(arr):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    from_folder = load_reference(folder, MeanColorExtractor(), batch_size=3)
    np.testing.assert_allclose(from_folder.mu, ref.mu)
    np.testing.assert_allclose(from_folder.sigma, ref.sigma)


def test_reference_file_stats_dimension_check(tmp_path):
    np.savez(tmp_path / "ref.npz", arr_0=_uint8_images(), mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ValueError, match="prefer_file_stats"):
        load_reference(tmp_path / "ref.npz", MeanColorExtractor())
    ref = load_reference(tmp_path / "ref.npz", MeanColorExtractor(), prefer_file_stats=False)
    assert ref.mu.shape == (6,) and ref.features.shape == (10, 6)
