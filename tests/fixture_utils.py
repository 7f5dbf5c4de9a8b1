"""Discovery of the golden fixtures (shared/fixtures/*/config.json) for the fixture-runner tests.

The fixtures live outside the repo: `VAPI_FIXTURES_DIR` names their root, by default `<repo>/../shared/fixtures`.
A runner parametrizes over `fixture_params(kind)`: one case per folder whose config.json has that `kind`, or one
skipped case naming the directory when there are none, so a checkout without fixtures still passes. When
`VAPI_FIXTURES_DIR` is set but holds no fixture at all, that case fails instead (a mistyped path must not turn the
golden checks into one quiet skip); the end of the pytest report says how many fixture checks ran (conftest.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path:
    """The fixture root: $VAPI_FIXTURES_DIR, else <repo>/../shared/fixtures."""
    env = os.environ.get("VAPI_FIXTURES_DIR")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared" / "fixtures").resolve()


def load_config(folder: Path) -> dict:
    """Parsed config.json of a fixture folder."""
    return json.loads((folder / "config.json").read_text())


def load_io(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors of io.safetensors, parsed io.json with per-tensor role/shape/doc under "tensors")."""
    return load_file(str(folder / "io.safetensors")), json.loads((folder / "io.json").read_text())


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The reference state_dict: every safetensors file listed in config.json `weights` (shards merged)."""
    state: dict[str, torch.Tensor] = {}
    for name in load_config(folder)["weights"]:
        state.update(load_file(str(folder / name)))
    return state


def discover(kind: str) -> list[Path]:
    """Every folder under fixtures_dir() whose config.json has `"kind": kind`, sorted by path."""
    root = fixtures_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob("config.json") if load_config(p.parent).get("kind") == kind)


class MissingFixtures(str):
    """The parameter of a fixture case that must fail: VAPI_FIXTURES_DIR names a place without fixtures."""


def fixture_params(kind: str) -> list:
    """pytest.param per fixture folder of `kind` (id = path relative to the root), or one skipped param if none
    (a failing one if VAPI_FIXTURES_DIR is set and holds no fixture of any kind)."""
    root = fixtures_dir()
    folders = discover(kind)
    if folders:
        return [pytest.param(f, id=f.relative_to(root).as_posix()) for f in folders]
    if os.environ.get("VAPI_FIXTURES_DIR") and not (root.is_dir() and any(root.rglob("config.json"))):
        return [pytest.param(MissingFixtures(f"VAPI_FIXTURES_DIR={os.environ['VAPI_FIXTURES_DIR']} holds no golden "
                                             f"fixtures (no */config.json under {root})"), id=f"no-{kind}-fixtures")]
    reason = f"no fixtures of kind {kind!r} under {root} (set VAPI_FIXTURES_DIR)"
    return [pytest.param(None, id=f"no-{kind}-fixtures", marks=pytest.mark.skip(reason=reason))]
