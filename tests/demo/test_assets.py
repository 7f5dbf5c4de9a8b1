"""The demo's shipped pretrained stages load, match their recorded config and cache key, and hash as recorded."""
import json

import pytest

from vapi.demo.run import DemoConfig, repo_assets, stage_keys
from vapi.demo.assets import portable_metrics, verify
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
