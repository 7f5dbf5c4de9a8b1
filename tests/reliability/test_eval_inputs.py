"""`vapi eval` reads only uint8 [N, H, W, 3] images, names unreadable files, skips (and counts) corrupt images in a
folder, and warns when there are too few samples for the statistics."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vapi.cli import main
from vapi.commands import eval as eval_cmd
from vapi.eval.npz import save_npz


class PooledColor:
    """Features = the 2x2-pooled image [N, 12]; no logits."""

    name, spatial = "pooled-color", False

    def __call__(self, images):
        x = images.float()  # [N, 3, H, W]
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1), None


@pytest.fixture
def cheap_features(monkeypatch):
    monkeypatch.setattr(eval_cmd, "build_extractor", lambda args, device: (PooledColor(), False, False))


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def run(capsys, samples, ref, tmp_path):
    rc = main(["eval", str(samples), "--ref", str(ref), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
               "--json", str(tmp_path / "r.json")])
    return rc, capsys.readouterr().err.strip()


@pytest.mark.parametrize("dtype,shape", [(np.float32, (20, 8, 8, 3)), (np.int64, (20, 8, 8, 3)),
                                         (np.uint8, (20, 3, 8, 8)), (np.uint8, (20, 8, 8, 4))])
def test_only_uint8_hwc_rgb_is_read(tmp_path, capsys, cheap_features, dtype, shape):
    save_npz(tmp_path / "ref.npz", images(20))
    np.savez(tmp_path / "s.npz", arr_0=np.zeros(shape, dtype=dtype))
    rc, err = run(capsys, tmp_path / "s.npz", tmp_path / "ref.npz", tmp_path)
    assert rc == 2 and len(err.splitlines()) == 1 and "uint8 [N, H, W, 3]" in err and "s.npz" in err


def test_random_bytes_npz_is_one_line(tmp_path, capsys, cheap_features):
    save_npz(tmp_path / "ref.npz", images(20))
    (tmp_path / "s.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    rc, err = run(capsys, tmp_path / "s.npz", tmp_path / "ref.npz", tmp_path)
    assert rc == 2 and len(err.splitlines()) == 1 and "s.npz" in err


def test_corrupt_files_in_an_eval_folder_are_counted_and_skipped(tmp_path, capsys, cheap_features):
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, arr in enumerate(images(20)):
        Image.fromarray(arr).save(folder / f"{i:03d}.png")
    (folder / "bad1.png").write_bytes(b"not a png")
    (folder / "bad2.jpg").write_bytes((folder / "000.png").read_bytes()[:30])
    save_npz(tmp_path / "ref.npz", images(20, seed=1))
    rc, err = run(capsys, folder, tmp_path / "ref.npz", tmp_path)
    assert rc == 0 and "skipped 2 unreadable of 22 files" in err
    assert json.loads((tmp_path / "r.json").read_text())["num_samples"] == 20


def test_too_few_samples_warns(tmp_path, capsys, cheap_features):
    save_npz(tmp_path / "ref.npz", images(20))
    save_npz(tmp_path / "s.npz", images(6, seed=2))
    rc, err = run(capsys, tmp_path / "s.npz", tmp_path / "ref.npz", tmp_path)
    assert rc == 0 and "FID on 6 samples with 12-dim features" in err
