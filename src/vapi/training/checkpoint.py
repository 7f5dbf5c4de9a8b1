"""Training checkpoints: `<run>/checkpoints/step-XXXXXX/` = the policy as a vapi model folder (safetensors +
config.json, loadable by `vapi sample` and exportable to LlamaGen) + `trainer_state.pt` (optimizer, scheduler, every
RNG, data position, step), written atomically (temporary folder, then rename) with only the last N kept.

`trainer_state.pt` holds tensors and plain containers only, so it loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from vapi.models.checkpoint import save_pretrained
from vapi.models.state_dict_io import read_folder_weights, read_model_config

PREFIX = "step-"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "trainer_state.pt").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: Path, step: int, policy: torch.nn.Module, trainer_state: dict, keep: int = 2) -> Path:
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        save_pretrained(policy, tmp / "model")
        torch.save(trainer_state, tmp / "trainer_state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, policy: torch.nn.Module) -> dict:
    """Load the policy weights in place (strict, same architecture) and return the trainer state."""
    path = Path(path)
    if not (path / "trainer_state.pt").is_file():
        raise FileNotFoundError(f"{path} is not a vapi training checkpoint (no trainer_state.pt)")
    _, config = read_model_config(path / "model")
    saved, current = config.to_dict(), policy.config.to_dict()
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ValueError(f"cannot resume from {path}: it holds another model (differs in {', '.join(diff)}); "
                         "resume with the same generator or start a new output_dir")
    policy.load_state_dict(read_folder_weights(path / "model"), strict=True)
    return torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
