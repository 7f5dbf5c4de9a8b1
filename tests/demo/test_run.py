"""A scaled-down `vapi demo` (the main study's core) end to end (seconds): report with intervals, pictures, saved
policies, finite metrics, cache reuse and cache keys; `vapi ablate --list`."""
import json
import math

import pytest

from vapi.cli import main
from vapi.config import load_config
from vapi.demo.run import DemoConfig, stage_key

TINY = ["data.train_images=240", "data.test_images=100", "data.image_size=16", "eval_samples=40",
        "tokenizer.image_size=16", "tokenizer.steps=15", "tokenizer.batch_size=16", "tokenizer.val_size=40",
        "tokenizer.codebook_size=32", "tokenizer.ch=16", "tokenizer.z_channels=16", "tokenizer.norm_groups=4",
        "prior.image_size=16", "prior.steps=15", "prior.batch_size=16", "prior.val_size=40", "prior.dim=32",
        "prior.n_layer=1", "prior.n_head=2", "prior.samples_per_class=2",
        "evalnet.steps=15", "evalnet.batch_size=16", "evalnet.val_size=40",
        "perceptual.steps=15", "perceptual.batch_size=16", "perceptual.val_size=40", "perceptual.widths=[8,16]",
        "post.steps=3", "post.images_per_step=4", "post.micro_batch_size=16", "post.eval_steps=2",
        "post.objective.num_generations=4", "progress=false", "seeds=2", "eval_seeds=2", "shipped_dir=", "jobs=1"]


def test_tiny_demo_end_to_end(tmp_path, capsys):
    args = ["demo", *TINY, f"out_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    run = next((tmp_path / "runs").glob("demo-*"))
    assert f"report: {run / 'report.md'}" in out and "| VA-π |" in out and "95 %" in out
    report = (run / "report.md").read_text()
    assert "matched control" in report and "Evaluation noise (base prior, 2 sampling seeds, N = 40" in report
    assert "KL-to-reference prior β 1" in report  # the demo's prior term, named in the report's settings
    assert "Base convergence check: the CE fine-tune (the `ce` row" in report  # not the KL-only control (= the base)
    assert "The tokenizer's floor: FID of its reconstructions of 40 training images" in report
    assert "The demo's post-training defaults were chosen on seeds 0–2" not in report  # tiny stages, not shipped
    for name in ("real", "samples_base", "samples_vapi", "samples_control", "samples_ce", "samples_vapi_no_prior",
                 "curves", "rows"):
        assert (run / f"{name}.png").stat().st_size > 0
        assert f"{name}.png" in report
    results = json.loads((run / "results.json").read_text())["results"]
    assert set(results) == {"base", "control", "ce", "vapi", "vapi_no_prior"}
    assert len(results["vapi"]) == 2 and len(results["base"]) == 2  # 2 seeds; 2 evaluation seeds of the base
    assert (run / "vapi-seed1" / "model" / "config.json").is_file() and (run / "vapi-seed1" / "eval_settings.json").is_file()
    assert '"val_ce"' in (run / "vapi-seed1" / "metrics.jsonl").read_text()  # post.eval_steps=2: curves of val CE
    for runs in results.values():
        for r in runs:
            assert all(math.isfinite(v) for v in r.values()), r
    # an interrupted study's report is written again from results.json
    (run / "report.md").unlink()
    assert main(["ablate", "main", "--report", str(run)]) == 0 and "matched control" in (run / "report.md").read_text()
    # the second run reuses every cached stage
    assert main(args) == 0
    runs = sorted((tmp_path / "runs").glob("demo-*"))
    cached = json.loads((runs[-1] / "results.json").read_text())["cached"]
    assert cached == {"tokenizer": "cached", "prior": "cached", "evalnet": "cached", "perceptual": "cached"}


def test_cache_keys_follow_the_config():
    a = load_config(DemoConfig, overrides=TINY)
    b = load_config(DemoConfig, overrides=[*TINY, "tokenizer.steps=16"])
    assert stage_key(a.data, a.tokenizer) != stage_key(b.data, b.tokenizer)
    assert stage_key(a.data, a.evalnet) == stage_key(b.data, b.evalnet)


def test_ablate_lists_rows(capsys):
    assert main(["ablate", "reward", "--list"]) == 0
    out = capsys.readouterr().out
    assert "mse_ce" in out and "objective.policy_weight" in out
    assert main(["ablate", "main", "--rows", "nope", "--list"]) == 2


def test_tiny_baselines_run_through_ablate(tmp_path):
    """STE, the post-trained tokenizer (evaluated with its own decoder) and free-running GRPO on the demo's stages."""
    args = ["ablate", "main", "--rows", "base,ste,tokenizer,grpo", *TINY, f"out_dir={tmp_path / 'runs'}",
            f"cache_dir={tmp_path / 'cache'}", "seeds=1", "eval_seeds=1", "post.eval_steps=0", "first_seed=2"]
    assert main(args) == 0
    run = next((tmp_path / "runs").glob("ablate-main-*"))
    logged = (run / "ste-seed2" / "metrics.jsonl").read_text()  # first_seed=2: the one seed is 2
    assert "prior_ce" in logged and "val_ce" not in logged  # no validation during training at post.eval_steps=0
    results = json.loads((run / "results.json").read_text())["results"]
    assert set(results) == {"base", "ste", "tokenizer", "grpo"}
    assert (run / "tokenizer-seed2" / "tokenizer" / "config.json").is_file() and (run / "samples_ste.png").is_file()
    assert results["tokenizer"][0]["fid_nocfg"] != results["base"][0]["fid_nocfg"]  # decoded by the trained decoder
    saved = json.loads((run / "results.json").read_text())
    assert not {"ste", "grpo"} & set(saved["times"])  # stage times only: a row's time is per run, on its own
    report = (run / "report.md").read_text()
    tokenizer_time = saved["train_seconds"]["tokenizer"][0]
    assert f"| post-trained tokenizer (decoder) | {tokenizer_time:.1f} | 1 |" in report  # the method, not the stage


def test_reuse_runs_trains_a_row_shared_by_studies_once(tmp_path, monkeypatch):
    """`reuse_runs=true`: VA-π in `main` and ξ = 0 in `noise` resolve to the same run, which trains once; the
    post-trained tokenizer comes back with its own decoder. Without it, nothing is reused."""
    import vapi.demo.ablate as ablate
    common = [*TINY, f"out_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}", "seeds=1", "eval_seeds=1",
              "reuse_runs=true"]
    assert main(["ablate", "main", "--rows", "base,vapi,tokenizer", *common]) == 0
    first = next((tmp_path / "runs").glob("ablate-main-*"))
    before = json.loads((first / "results.json").read_text())["results"]

    def no_training(*a, **k):
        raise AssertionError("a reusable run was trained again")

    monkeypatch.setattr(ablate, "post_train", no_training)
    assert main(["ablate", "noise", "--rows", "base,xi0", *common]) == 0
    assert main(["ablate", "main", "--rows", "base,tokenizer", *common]) == 0
    noise = next((tmp_path / "runs").glob("ablate-noise-*"))
    again = json.loads((noise / "results.json").read_text())["results"]
    assert again["xi0"] == before["vapi"]
    assert (noise / "xi0-seed0" / "model" / "config.json").is_file()
    latest = sorted((tmp_path / "runs").glob("ablate-main-*"))[-1]
    assert json.loads((latest / "results.json").read_text())["results"]["tokenizer"] == before["tokenizer"]
    without_reuse = [c for c in common if c != "reuse_runs=true"]
    with pytest.raises(AssertionError, match="trained again"):
        main(["ablate", "noise", "--rows", "base,xi0", *without_reuse])


def test_runs_in_two_processes_equal_the_runs_in_one(tmp_path):
    """`jobs=2`: the runs go to two spawned processes (one torch thread each); every trained row's results and the
    saved policies are those of the one-process study."""
    # the CE prior, so that the matched control trains too (with the default KL prior alone it is the base's weights)
    common = [*TINY, f"cache_dir={tmp_path / 'cache'}", "seeds=2", "eval_seeds=1", "post.objective.prior_weight=1",
              "post.objective.beta=0"]
    assert main(["ablate", "main", "--rows", "base,control,vapi", *common, "threads=1",
                 f"out_dir={tmp_path / 'one'}"]) == 0
    assert main(["ablate", "main", "--rows", "base,control,vapi", *common, "jobs=2", "threads=2",
                 f"out_dir={tmp_path / 'two'}"]) == 0
    one, two = (next((tmp_path / d).glob("ablate-main-*")) for d in ("one", "two"))
    a, b = (json.loads((d / "results.json").read_text())["results"] for d in (one, two))
    assert a["control"] == b["control"] and a["vapi"] == b["vapi"] and len(b["vapi"]) == 2
    assert a["control"][0]["val_ce"] != a["base"][0]["val_ce"]  # the control was trained: not the base's weights
    assert (two / "samples_vapi.png").stat().st_size > 0 and (two / "vapi-seed1" / "model" / "config.json").is_file()


class _PixelVQ:
    """A toy tokenizer on [N, 3, 4, 4] images: one token per pixel value, `levels` values over [-1, 1]. With
    levels=None it is lossless."""

    def __init__(self, levels=None):
        self.levels = levels

    def encode(self, x):
        scale = 1000 if self.levels is None else (self.levels - 1) / 2
        return ((x.flatten(1) + 1) * scale).round().long()  # [N, 48]

    def decode(self, t):
        scale = 1000 if self.levels is None else (self.levels - 1) / 2
        return (t.float() / scale - 1).view(len(t), 3, 4, 4)


def test_the_tokenizer_floor_is_the_fid_of_its_reconstructions_of_training_images():
    from vapi.demo.run import Evaluator
    from vapi.models.classifier import Classifier, ClassifierConfig
    import torch
    gen = torch.Generator().manual_seed(0)
    test = [(torch.rand(3, 4, 4, generator=gen) * 2 - 1, i % 2) for i in range(60)]
    train = [(torch.rand(3, 4, 4, generator=gen) * 2 - 1, i % 2) for i in range(80)]
    test_set = type("Held", (list,), {"num_classes": 2})(test)
    torch.manual_seed(0)
    net = Classifier(ClassifierConfig(num_classes=2, widths=[4, 8], blocks=1)).eval()
    cfg = DemoConfig(eval_samples=50)
    exact = Evaluator(cfg, _PixelVQ(), net, test_set, train=train)
    out = exact.tokenizer_alignment(None)
    assert out["floor_images"] == 50  # eval_samples training images
    assert out["real_fid"] > 0  # another 50 images than the reference: the sampling floor
    assert abs(out["recon_fid"] - out["real_fid"]) < 1e-3  # a lossless tokenizer sits on the floor
    coarse = Evaluator(cfg, _PixelVQ(levels=3), net, test_set, train=train).tokenizer_alignment(None)
    assert coarse["real_fid"] == out["real_fid"] and coarse["recon_fid"] > out["recon_fid"] + 1e-3
    assert "recon_fid" not in Evaluator(cfg, _PixelVQ(), net, test_set).tokenizer_alignment(None)  # no train set


def test_the_floor_images_have_the_evaluations_class_mix():
    from vapi.demo.run import floor_indices
    from vapi.eval.generation import balanced_labels
    labels = [0, 0, 0, 1, 2, 1, 0, 2, 1]  # class folders in a shuffled order
    assert floor_indices(labels, balanced_labels(6, 3)) == [0, 3, 4, 1, 5, 7]  # classes 0 1 2 0 1 2
    assert floor_indices(labels, balanced_labels(12, 3)) == [0, 3, 4, 1, 5, 7, 2, 8, 6]  # class 2 runs out
    assert floor_indices(list(range(4)) * 3, balanced_labels(8, 4)) == list(range(8))  # interleaved: the first 8
