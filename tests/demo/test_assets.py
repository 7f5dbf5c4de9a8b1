"""The demo's shipped pretrained stages load, match their recorded config and cache key, and hash as recorded."""
import json
from pathlib import Path

import pytest

from vapi.demo.run import DemoConfig, repo_assets, stage_keys
from vapi.demo.assets import STAGES, portable_metrics, ship, verify
from vapi.models.weights_io import load_pretrained


def test_shipped_stages_match_config_and_hashes():
    assert verify() == []
    total = sum(f.stat().st_size for f in repo_assets().rglob("*") if f.is_file())
    assert total <= 10 * 2**20, f"shipped stages are {total / 2**20:.1f} MiB (budget 10)"


@pytest.mark.parametrize("stage", ["tokenizer", "prior", "evalnet", "perceptual"])
def test_shipped_stage_loads(stage):
    key = stage_keys(DemoConfig())[stage]
    model = load_pretrained(repo_assets() / f"{stage}-{key}")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_shipped_metrics_name_their_stages_by_shipped_folder():
    keys = stage_keys(DemoConfig())
    for stage, key in keys.items():
        metrics = json.loads((repo_assets() / f"{stage}-{key}" / "metrics.json").read_text())
        for other in keys:
            if isinstance(metrics.get(other), str):
                assert metrics[other] == f"{other}-{keys[other]}", (stage, metrics[other])  # not a builder's path


def test_portable_metrics_replaces_builder_paths_and_keeps_the_rest(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"tokenizer": "/home/someone/cache/tokenizer-abc", "val_ce_nats": 3.2, "prior": 7}))
    portable_metrics(path, {"tokenizer": "tokenizer-abc", "prior": "prior-def"})
    assert json.loads(path.read_text()) == {"tokenizer": "tokenizer-abc", "val_ce_nats": 3.2, "prior": 7}


def test_portable_metrics_refuses_a_stage_built_on_another_folder(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"tokenizer": "/home/someone/exp/tok7200"}))
    with pytest.raises(ValueError, match="built on tokenizer '/home/someone/exp/tok7200', not on the shipped tok"):
        portable_metrics(path, {"tokenizer": "tokenizer-abc"})


def fake_cache(cfg: DemoConfig) -> dict[str, str]:
    """Stage folders as `vapi demo --rebuild` leaves them (tiny stand-in files: ship copies, it does not load)."""
    keys = stage_keys(cfg)
    for name, key in keys.items():
        folder = Path(cfg.cache_dir) / f"{name}-{key}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(name.encode())
        (folder / "config.json").write_text("{}")
        (folder / "samples.png").write_bytes(b"not shipped")
        tokenizer = str(Path(cfg.cache_dir) / f"tokenizer-{keys['tokenizer']}")
        built_on = {"tokenizer": tokenizer} if name == "prior" else {}
        (folder / "metrics.json").write_text(json.dumps({"stage": name, **built_on}))
    return keys


def test_ship_copies_the_cached_stages_and_verify_accepts_them(tmp_path):
    cfg = DemoConfig(cache_dir=str(tmp_path / "cache"))
    keys = fake_cache(cfg)
    dest = ship(cfg, tmp_path / "assets")
    assert verify(dest, cfg) == []
    assert sorted(p.name for p in dest.iterdir()) == sorted(["MANIFEST.json"] + [f"{n}-{keys[n]}" for n in STAGES])
    prior = dest / f"prior-{keys['prior']}"
    assert sorted(p.name for p in prior.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    assert json.loads((prior / "metrics.json").read_text())["tokenizer"] == f"tokenizer-{keys['tokenizer']}"
    (dest / f"evalnet-{keys['evalnet']}" / "model.safetensors").write_bytes(b"changed")
    assert verify(dest, cfg) == ["evalnet: model.safetensors missing or its hash differs"]


def test_ship_refuses_a_stage_that_is_not_built(tmp_path):
    cfg = DemoConfig(cache_dir=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="is not built: run `vapi demo --rebuild`"):
        ship(cfg, tmp_path / "assets")
