"""`vapi sample` mass mode: PNG folder + ADM npz, labels, resize, per-sample seeds, resume, sharding, errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import vapi.eval.sample_many as sm
import vapi.sampling
from tiny import tiny_policy, tiny_tokenizer
from vapi.eval.npz import NpzWriter, load_npz
from vapi.models.weights_io import save_pretrained

# 10 classes, 4x4 tokens, 16 px images (downsample 4)
FAST = ["--cfg", "2.0", "--top-k", "0", "--device", "cpu", "--seed", "3"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return save_pretrained(tiny_policy(seed=1), d / "gpt"), save_pretrained(tiny_tokenizer(seed=1), d / "vq")


def sample(run_cli, models, out_dir, n, *extra):
    gpt, vq = models
    return run_cli("sample", "--gpt", gpt, "--vq", vq, "--num-samples", n, "--out-dir", out_dir, *FAST,
                   *extra)


@pytest.fixture
def count_generate(monkeypatch):
    """Count generate() calls made by the mass sampler (one per batch, through vapi.sampling.sample_images)."""
    calls = []
    real = vapi.sampling.generate

    def counting(*args, **kwargs):
        calls.append(args[1].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(vapi.sampling, "generate", counting)
    return calls


def test_mass_sampling_writes_pngs_and_adm_npz(models, tmp_path, run_cli):
    out = tmp_path / "run"
    code, stdout, err = sample(run_cli, models, out, 7, "--shard-size", "3", "--batch-size", "2",
                               "--labels", "balanced", "--resize", "12")
    assert code == 0, err
    assert "generated 3 shards (7 images" in stdout and "samples.npz" in stdout
    pngs = sorted((out / "samples").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(7)]
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000.done", "00001.done", "00002.done"]
    with np.load(out / "samples.npz") as z:  # ADM layout: uint8 NHWC arr_0, labels arr_1
        assert sorted(z.files) == ["arr_0", "arr_1"]
        assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (7, 12, 12, 3)
        np.testing.assert_array_equal(z["arr_1"], np.arange(7) % 10)
        np.testing.assert_array_equal(z["arr_0"][4], np.asarray(Image.open(pngs[4])))
    manifest = json.loads((out / "sampling.json").read_text())
    assert manifest["resize"] == 12 and manifest["sampling.cfg_scale"] == 2.0 and manifest["labels"] == "balanced"


def test_resize_is_llamagen_bicubic():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    expected = torch.nn.functional.interpolate(x, size=(12, 12), mode="bicubic")
    assert torch.equal(sm.resize_images(x, 12), expected)
    assert sm.resize_images(x, None) is x and sm.resize_images(x, 16) is x


def test_labels_uniform_and_balanced():
    uni = sm.sample_labels(range(3000), 10, "uniform", seed=0)
    assert uni.dtype == np.int64 and uni.min() >= 0 and uni.max() < 10
    counts = np.bincount(uni, minlength=10)
    assert counts.min() > 230 and counts.max() < 370  # 300 expected per class, ~5 sigma band
    np.testing.assert_array_equal(sm.sample_labels(range(100, 110), 10, "uniform", 0), uni[100:110])  # per index
    assert not np.array_equal(sm.sample_labels(range(50), 10, "uniform", seed=1), uni[:50])
    np.testing.assert_array_equal(np.bincount(sm.sample_labels(range(50), 10, "balanced")), [5] * 10)
    with pytest.raises(ValueError, match="labels must be one of"):
        sm.sample_labels(range(3), 10, "random")


def test_sharding_helpers():
    assert sm.shard_ranges(7, 3) == [range(0, 3), range(3, 6), range(6, 7)]
    assert sm.rank_shards(5, 1, 2) == [1, 3] and sm.rank_shards(5, 0, 1) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        sm.rank_shards(5, 2, 2)


def test_resume_skips_done_shards_and_redoes_a_deleted_one(models, tmp_path, count_generate, run_cli):
    out = tmp_path / "run"
    assert sample(run_cli, models, out, 5, "--shard-size", "2", "--batch-size", "2")[0] == 0
    assert sum(count_generate) == 5 and len(count_generate) == 3  # 3 shards of <= 2 images, one batch each
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "samples").iterdir()}

    count_generate.clear()
    code, stdout, _ = sample(run_cli, models, out, 5, "--shard-size", "2", "--batch-size", "2")
    assert code == 0 and count_generate == [] and "skipped 3 finished shards" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in (out / "samples").iterdir()} == {k: v[0] for k, v in
                                                                                 before.items()}

    (out / "samples" / "000003.png").unlink()  # shard 1 = images 2, 3: regenerated whole, identically
    (out / "shards" / "00002.done").unlink()  # shard 2 = image 4
    code, stdout, _ = sample(run_cli, models, out, 5, "--shard-size", "2", "--batch-size", "2")
    assert code == 0 and count_generate == [2, 1] and "skipped 1 finished shards" in stdout
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "samples").iterdir()}
    assert after["000000.png"] == before["000000.png"]  # shard 0 untouched
    assert after["000002.png"][0] != before["000002.png"][0]  # rewritten ...
    assert all(after[k][1] == before[k][1] for k in before)  # ... with the same pixels


def test_same_seed_same_images_whatever_the_batching_and_ranks(models, tmp_path, monkeypatch, run_cli):
    assert sample(run_cli, models, tmp_path / "a", 6, "--shard-size", "6", "--batch-size", "6")[0] == 0
    ref_imgs, ref_labels = load_npz(tmp_path / "a" / "samples.npz")

    # two torchrun ranks, shard size 2: rank 1 does shards 1 and 3 and leaves the npz to rank 0
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        code, stdout, _ = sample(run_cli, models, tmp_path / "b", 6, "--shard-size", "2", "--batch-size", "1")
        assert code == 0 and f"rank {rank}/2: generated" in stdout
        if rank == 1:
            assert sorted(p.name for p in (tmp_path / "b" / "shards").iterdir()) == ["00001.done"]
            assert not (tmp_path / "b" / "samples.npz").exists()
    imgs, labels = load_npz(tmp_path / "b" / "samples.npz")
    np.testing.assert_array_equal(imgs, ref_imgs)
    np.testing.assert_array_equal(labels, ref_labels)

    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert sample(run_cli, models, tmp_path / "c", 6, "--seed", "4")[0] == 0
    other, _ = load_npz(tmp_path / "c" / "samples.npz")
    assert not np.array_equal(other, ref_imgs)


@pytest.mark.parametrize("case", ["other_settings", "half_mass", "both_modes", "no_mode"])
def test_bad_mass_sampling_inputs_are_one_line_errors(models, tmp_path, case, run_cli):
    gpt, vq = models
    base = ["sample", "--gpt", gpt, "--vq", vq, *FAST]
    if case == "other_settings":
        assert sample(run_cli, models, tmp_path / "r", 2)[0] == 0
        argv, expect = [*base, "--num-samples", 2, "--out-dir", tmp_path / "r", "--cfg", "3"], "sampling.cfg_scale"
    elif case == "half_mass":
        argv, expect = [*base, "--num-samples", 2], "needs both --num-samples and --out-dir"
    elif case == "both_modes":
        argv = [*base, "--num-samples", 2, "--out-dir", tmp_path / "r", "--classes", "1", "--out", tmp_path / "g.png"]
        expect = "separate modes"
    else:
        argv, expect = base, "give --classes and --out"
    code, _, err = run_cli(*argv)
    assert code == 2 and expect in err and err.count("\n") == 1


def test_npz_writer_streams_what_np_load_and_adm_read(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 3, 3), dtype=np.uint8)
    with NpzWriter(tmp_path / "s.npz") as w:
        w.begin("arr_0", x.shape, np.uint8)
        w.write(x[:2])
        w.write(x[2:])
        w.add("arr_1", np.arange(5))
    imgs, labels = load_npz(tmp_path / "s.npz")
    np.testing.assert_array_equal(imgs, x)
    np.testing.assert_array_equal(labels, np.arange(5))
    with pytest.raises(ValueError, match="short"), NpzWriter(tmp_path / "bad.npz") as w:
        w.begin("arr_0", x.shape, np.uint8)
        w.write(x[:2])
    assert not (tmp_path / "bad.npz").exists() and list(tmp_path.iterdir()) == [tmp_path / "s.npz"]
