"""A scaled-down `vapi demo` end to end (seconds): report, pictures, finite metrics, cache reuse and cache keys."""
import json
import math

from vapi.cli import main
from vapi.config import load_config
from vapi.demo import DemoConfig, stage_key

TINY = ["data.train_images=240", "data.test_images=100", "data.image_size=16", "eval_samples=40",
        "tokenizer.image_size=16", "tokenizer.steps=15", "tokenizer.batch_size=16", "tokenizer.val_size=40",
        "tokenizer.codebook_size=32", "tokenizer.ch=16", "tokenizer.z_channels=16", "tokenizer.norm_groups=4",
        "prior.image_size=16", "prior.steps=15", "prior.batch_size=16", "prior.val_size=40", "prior.dim=32",
        "prior.n_layer=1", "prior.n_head=2", "prior.samples_per_class=2",
        "evalnet.steps=15", "evalnet.batch_size=16", "evalnet.val_size=40",
        "post.steps=3", "post.images_per_step=4", "post.micro_batch_size=16", "post.eval_steps=2",
        "post.objective.num_generations=4", "progress=false"]


def test_tiny_demo_end_to_end(tmp_path, capsys):
    args = ["demo", *TINY, f"out_dir={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    run = next((tmp_path / "runs").glob("demo-*"))
    assert f"report: {run / 'report.md'}" in out and "| VA-π |" in out
    report = (run / "report.md").read_text()
    for name in ("real", "samples_base", "samples_vapi", "samples_ce", "samples_vapi_no_prior", "curves"):
        assert (run / f"{name}.png").stat().st_size > 0
        assert f"{name}.png" in report
    results = json.loads((run / "results.json").read_text())["results"]
    assert set(results) == {"base", "vapi", "ce", "vapi_no_prior"}
    for runs in results.values():
        for r in runs:
            assert all(math.isfinite(v) for v in r.values()), r
    # the second run reuses every cached stage
    assert main(args) == 0
    runs = sorted((tmp_path / "runs").glob("demo-*"))
    cached = json.loads((runs[-1] / "results.json").read_text())["cached"]
    assert cached == {"tokenizer": True, "prior": True, "evalnet": True}


def test_cache_keys_follow_the_config():
    a = load_config(DemoConfig, overrides=TINY)
    b = load_config(DemoConfig, overrides=[*TINY, "tokenizer.steps=16"])
    assert stage_key(a.data, a.tokenizer) != stage_key(b.data, b.tokenizer)
    assert stage_key(a.data, a.evalnet) == stage_key(b.data, b.evalnet)
