"""Feature extractors: classifier adapter, batching, Inception weights lookup and its offline error."""

import numpy as np
import pytest
import torch
from torch import nn

from vapi.eval.features import (
    INCEPTION_WEIGHTS_FILE,
    ClassifierExtractor,
    FeatureExtractor,
    InceptionV3Extractor,
    compute_features,
    to_uint8,
)


class TinyClassifier(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Linear(32, num_classes)

    def features(self, x):  # [N, 3, H, W] -> [N, 8, 2, 2]
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def _images(n=7, size=8, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_classifier_extractor_matches_module():
    torch.manual_seed(0)
    model = TinyClassifier()
    ext = ClassifierExtractor(model)
    assert isinstance(ext, FeatureExtractor)
    imgs = _images()  # [7, 3, 8, 8] uint8
    x = imgs.float().div(255.0).sub(0.5).div(0.5)  # the data pipeline's uint8 -> [-1, 1]
    feats, logits = ext(imgs)
    torch.testing.assert_close(feats, model.features(x).flatten(1), rtol=0, atol=0)
    torch.testing.assert_close(logits, model(x), rtol=0, atol=0)
    feats_f, _ = ext(x)  # float input in [-1, 1] is used as is
    torch.testing.assert_close(feats_f, feats)
    assert ClassifierExtractor(model, head=None)(imgs)[1] is None


def test_compute_features_batches_and_layouts():
    torch.manual_seed(0)
    ext = ClassifierExtractor(TinyClassifier())
    imgs = _images()
    ref_f, ref_l = ext(imgs)
    feats, logits = compute_features(ext, imgs, batch_size=3, progress=False)  # one tensor, 3 + 3 + 1
    np.testing.assert_allclose(feats, ref_f.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logits, ref_l.numpy(), rtol=1e-6, atol=1e-6)
    nhwc_batches = [imgs[:4].permute(0, 2, 3, 1).numpy(), imgs[4:].permute(0, 2, 3, 1).numpy()]
    feats2, _ = compute_features(ext, iter(nhwc_batches), batch_size=2, progress=False)
    np.testing.assert_allclose(feats2, ref_f.numpy(), rtol=1e-6, atol=1e-6)


def test_extractor_name_follows_weights():
    torch.manual_seed(0)
    model = TinyClassifier()
    name = ClassifierExtractor(model).name
    with torch.no_grad():
        model.head.bias.add_(1.0)
    assert ClassifierExtractor(model).name != name


def test_to_uint8_rounding():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.5])
    assert to_uint8(x).tolist() == [0, 64, 128, 255, 255]


def test_missing_inception_weights_error_names_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError) as err:
        InceptionV3Extractor()
    msg = str(err.value)
    assert INCEPTION_WEIGHTS_FILE in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "--inception-weights" in msg
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        InceptionV3Extractor(weights_path=tmp_path / "nowhere.pth")


def test_inception_random_init_and_cache_lookup(tmp_path, monkeypatch):
    pytest.importorskip("torch_fidelity")
    ext = InceptionV3Extractor(random_init=True)
    imgs = _images(n=2, size=32)
    feats, logits = ext(imgs)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(feats).all() and torch.isfinite(logits).all()
    # a weights file in $TORCH_HOME/hub/checkpoints/ under torch-fidelity's name is found and loaded
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE
    cache.parent.mkdir(parents=True)
    torch.save(ext.net.state_dict(), cache)
    loaded = InceptionV3Extractor()
    assert loaded.name == "inception-v3-tf-2015-12-05"
    torch.testing.assert_close(loaded(imgs)[0], feats)
