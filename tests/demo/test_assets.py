"""The demo's shipped pretrained stages load, match their recorded config and cache key, and hash as recorded."""
import pytest

from vapi.demo.run import DemoConfig, repo_assets, stage_keys
from vapi.demo.assets import verify
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
