"""`vapi eval` end to end (random Inception, a vapi classifier), its one-line errors, and the ADM details it adds:
sFID features in TF order, 5000-sample IS chunks, reference sFID statistics and their cache."""
import json
import math

import numpy as np
import pytest
import torch

from tiny import tiny_policy, tiny_tokenizer
from vapi.cli import main
from vapi.data.procedural import ProceduralShapes, save_as_image_folder
from vapi.eval.features import INCEPTION_WEIGHTS_FILE, InceptionV3Extractor
from vapi.eval.metrics import feature_statistics, inception_score
from vapi.eval.npz import load_reference, save_npz
from vapi.models.weights_io import save_pretrained
from vapi.models.classifier import Classifier, classifier_config

METRICS = ("num_samples", "fid", "is", "is_std", "precision", "recall")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny generator's 6-sample ADM npz (+ its PNG folder), a procedural reference as npz and as image folder."""
    d = tmp_path_factory.mktemp("eval")
    gpt, vq = save_pretrained(tiny_policy(seed=1), d / "gpt"), save_pretrained(tiny_tokenizer(seed=1), d / "vq")
    assert main(["sample", "--gpt", str(gpt), "--vq", str(vq), "--num-samples", "6", "--out-dir", str(d / "run"),
                 "--labels", "balanced", "--cfg", "2", "--top-k", "0", "--device", "cpu"]) == 0
    shapes = ProceduralShapes(8, image_size=16, seed=5)
    save_npz(d / "ref.npz", torch.stack([shapes[i][0] for i in range(8)]), [shapes[i][1] for i in range(8)])
    torch.manual_seed(0)
    classifier = save_pretrained(Classifier(classifier_config("convnet-tiny")), d / "classifier")
    return {"npz": d / "run" / "samples.npz", "folder": d / "run" / "samples", "ref": d / "ref.npz",
            "ref_folder": save_as_image_folder(shapes, d / "ref_images"), "classifier": classifier, "gpt": gpt}


def _frechet_eigh(mu1, sigma1, mu2, sigma2):
    """The same Fréchet distance through symmetric eigendecompositions: tr sqrtm(S1 S2) = sum sqrt(eig(A S2 A)),
    A = sqrtm(S1). ~10x faster than scipy's sqrtm at D = 2048 on rank-deficient covariances (~30 s per call here)."""
    s1, s2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    w, v = torch.linalg.eigh(s1)
    a = (v * w.clamp_min(0).sqrt()) @ v.T
    tr_covmean = torch.linalg.eigvalsh(a @ s2 @ a).clamp_min(0).sqrt().sum()
    diff = torch.as_tensor(mu1 - mu2, dtype=torch.float64)
    return float(diff @ diff + s1.trace() + s2.trace() - 2 * tr_covmean)


def test_eigh_shortcut_matches_scipy_frechet_distance():
    from vapi.eval.metrics import frechet_distance

    g = np.random.default_rng(0)
    a, b = g.normal(size=(40, 12)), g.normal(1.0, 2.0, size=(30, 12))
    args = (*feature_statistics(a), *feature_statistics(b))
    assert _frechet_eigh(*args) == pytest.approx(frechet_distance(*args), rel=1e-9)


@pytest.mark.parametrize("sqrtm", ["eigh", pytest.param("scipy", marks=pytest.mark.slow)])
def test_eval_random_inception_end_to_end(files, tmp_path, monkeypatch, sqrtm, run_cli):
    if sqrtm == "eigh":  # scipy's sqrtm is validated in test_eval_metrics; here it would be ~80 % of the runtime
        monkeypatch.setattr("vapi.eval.report.frechet_distance", _frechet_eigh)
    out = tmp_path / "res.json"
    code, stdout, err = run_cli("eval", files["npz"], "--ref", files["ref"], "--random-inception",
                                "--cache-dir", tmp_path / "cache", "--json", out, "--device", "cpu")
    assert code == 0, err
    assert "random weights" in err and "not FID" in err  # the test-only flag says so
    res = json.loads(out.read_text())
    for key in (*METRICS, "sfid"):
        assert key in res and math.isfinite(res[key]), key
        assert key in stdout
    assert res["num_samples"] == 6 and res["features"] == "inception-v3-random-init" and res["fid"] > 0
    assert 0 <= res["precision"] <= 1 and 0 <= res["recall"] <= 1
    assert len(list((tmp_path / "cache").glob("ref-inception-v3-random-init-*.npz"))) == 1


def test_eval_classifier_features_npz_folder_and_cache(files, tmp_path, run_cli):
    common = ["--ref", files["ref_folder"], "--features", files["classifier"], "--cache-dir", tmp_path / "cache",
              "--device", "cpu", "--batch-size", "3"]
    code, stdout, err = run_cli("eval", files["npz"], *common, "--json", tmp_path / "npz.json")
    assert code == 0, err
    res = json.loads((tmp_path / "npz.json").read_text())
    for key in (*METRICS, "accuracy"):  # accuracy: the classifier is class-aligned with the npz labels
        assert math.isfinite(res[key]), key
    assert "sfid" not in res and res["features"].startswith("Classifier-")
    cached = list((tmp_path / "cache").glob("ref-Classifier-*.npz"))
    assert len(cached) == 1

    # the PNG folder holds the same pixels: same numbers; the cached reference is reused
    mtime = cached[0].stat().st_mtime_ns
    code, _, err = run_cli("eval", files["folder"], *common)
    assert code == 0, err
    res_folder = json.loads(files["folder"].with_name("samples.eval.json").read_text())  # the default JSON path
    assert res_folder["fid"] == pytest.approx(res["fid"], rel=1e-9) and "accuracy" not in res_folder
    assert cached[0].stat().st_mtime_ns == mtime


@pytest.mark.parametrize("case", ["weights_flag", "torch_home"])
def test_missing_inception_weights_is_one_line_error(files, tmp_path, monkeypatch, case, run_cli):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    extra = ["--inception-weights", tmp_path / "w" / "inception.pth"] if case == "weights_flag" else []
    code, _, err = run_cli("eval", files["npz"], "--ref", files["ref"], "--cache-dir", tmp_path, *extra)
    expect = "inception.pth" if case == "weights_flag" else INCEPTION_WEIGHTS_FILE
    assert code == 2 and expect in err and "InceptionV3 FID weights not found" in err
    assert err.count("\n") == 1 and err.startswith("vapi eval: error:")


@pytest.mark.parametrize("case", ["gpt_folder", "not_a_folder", "missing_samples"])
def test_bad_eval_inputs_are_one_line_errors(files, tmp_path, case, run_cli):
    samples, features = files["npz"], files["classifier"]
    if case == "gpt_folder":
        features, expect = files["gpt"], "not a classifier"
    elif case == "not_a_folder":
        features, expect = tmp_path / "nope", "is not a folder"
    else:
        samples, expect = tmp_path / "none.npz", "sample batch not found"
    code, _, err = run_cli("eval", samples, "--ref", files["ref"], "--features", features,
                           "--cache-dir", tmp_path)
    assert code == 2 and expect in err and err.count("\n") == 1


def test_sfid_features_are_adm_mixed_6_conv_in_nhwc_order():
    ext = InceptionV3Extractor(random_init=True, spatial=True)
    seen = []
    ext.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    images = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    pool, logits, spatial = ext(images)
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008) and spatial.shape == (2, 17 * 17 * 7)
    nhwc = seen[0][:, :7].permute(0, 2, 3, 1)  # TF: spatial[..., :7] of [N, 17, 17, 192], then reshape(N, -1)
    torch.testing.assert_close(spatial, nhwc.reshape(2, -1))
    assert spatial.std() > 0  # He-initialised random weights keep activations O(1), not ~1e-8


def test_inception_score_adm_chunks():
    probs = torch.rand(7, 4, generator=torch.Generator().manual_seed(1)).softmax(1).double().numpy()
    chunks = [inception_score(probs[s:e], splits=1)[0] for s, e in ((0, 3), (3, 6), (6, 7))]
    mean, std = inception_score(probs, split_size=3)
    assert mean == pytest.approx(np.mean(chunks)) and std == pytest.approx(np.std(chunks))
    assert inception_score(probs, split_size=5000) == pytest.approx(inception_score(probs, splits=1))


class SpatialMeanColor:
    """Pool features = channel means [N, 3], spatial = the 2x2-pooled image [N, 12]; counts its calls."""

    name, spatial = "spatial-mean-color", True

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        x = images.float()  # [N, 3, H, W]
        return x.mean((2, 3)), None, torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def test_reference_sfid_stats_computed_cached_or_from_file(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (9, 8, 8, 3), dtype=np.uint8)
    save_npz(tmp_path / "ref.npz", arr)
    ext = SpatialMeanColor()
    ref = load_reference(tmp_path / "ref.npz", ext, cache_dir=tmp_path / "cache", batch_size=4)
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float()
    mu_s, sigma_s = feature_statistics(torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1).numpy())
    np.testing.assert_allclose(ref.mu_s, mu_s, rtol=1e-5)
    np.testing.assert_allclose(ref.sigma_s, sigma_s, rtol=1e-4)
    ext.calls = 0
    again = load_reference(tmp_path / "ref.npz", ext, cache_dir=tmp_path / "cache")
    assert ext.calls == 0 and np.array_equal(again.sigma_s, ref.sigma_s)
    # an ADM reference's own mu_s / sigma_s win over computed ones (like mu / sigma)
    np.savez(tmp_path / "adm.npz", arr_0=arr, mu=np.zeros(3), sigma=np.eye(3), mu_s=np.ones(12), sigma_s=np.eye(12))
    adm = load_reference(tmp_path / "adm.npz", ext)
    assert np.array_equal(adm.mu_s, np.ones(12)) and np.array_equal(adm.mu, np.zeros(3))


def test_size_mismatch_warns(files, tmp_path, run_cli):
    small = np.random.default_rng(0).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    save_npz(tmp_path / "ref12.npz", small)
    code, _, err = run_cli("eval", files["npz"], "--ref", tmp_path / "ref12.npz", "--features",
                           files["classifier"], "--cache-dir", tmp_path, "--json", tmp_path / "r.json")
    assert code == 0 and "samples are 16x16 px, reference images 12x12" in err
