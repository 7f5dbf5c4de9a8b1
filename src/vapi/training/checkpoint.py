"""Training checkpoints, for one process, DDP and FSDP alike, resumable on any world size.

`<run>/checkpoints/step-XXXXXX/`:
  model/                the full policy as a vapi model folder (safetensors + config.json), gathered to rank 0:
                        what `vapi sample`, `vapi convert` and exports read;
  dcp/                  torch.distributed.checkpoint of {"model", "optimizer"}: each rank writes its own shard,
                        keyed by parameter name, so a resume re-shards to any world size (2 ranks → 1, 8 → 16);
  rng/rank-NNNNN.pt     each rank's TrainState (step, sampling generator, torch/python/CUDA RNG);
  trainer_state.pt      rank 0: scheduler, data position, step, world size. Written last: its presence marks a
                        complete checkpoint.
The folder is assembled under `.step-XXXXXX.tmp` and renamed by rank 0 once every rank is done (atomic on one
filesystem); only the last N are kept. Every rank must call `save_checkpoint` and `load_checkpoint` (collectives);
under torchrun the run folder must be on a filesystem all ranks share. `.pt` files hold tensors and plain
containers only and load with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from vapi.models.checkpoint import save_pretrained
from vapi.models.lora import merged_state_dict
from vapi.models.state_dict_io import read_model_config
from vapi.training.distributed import barrier

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


def _rng_file(path: Path, rank: int) -> Path:
    return path / "rng" / f"rank-{rank:05d}.pt"


def _dcp(fn, state: dict, path: Path) -> None:
    with warnings.catch_warnings():
        # One process without a process group is a supported case, not a mistake worth a warning per checkpoint.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        fn(state, checkpoint_id=str(path))


def save_checkpoint(run_dir: Path, step: int, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_state: dict, rank_state: dict, *, rank: int = 0, keep: int = 2) -> Path:
    """Called by every rank. `policy` is the unwrapped model (FSDP2-sharded or not), `trainer_state` rank 0's global
    state, `rank_state` this rank's TrainState."""
    root = checkpoint_dir(run_dir)
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f".{final.name}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed mid-save
        (tmp / "rng").mkdir(parents=True)
    barrier()
    # Under FSDP both calls are collectives; cpu_offload leaves the gathered full weights on rank 0 only.
    full = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    _dcp(dcp.save, {"model": get_model_state_dict(policy), "optimizer": get_optimizer_state_dict(policy, optimizer)},
         tmp / "dcp")
    torch.save(rank_state, _rng_file(tmp, rank))
    if rank == 0:
        save_pretrained(policy, tmp / "model", state_dict=merged_state_dict(policy, full))  # adapters folded in
        torch.save(trainer_state, tmp / "trainer_state.pt")
    barrier()
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(path: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    rank: int = 0) -> tuple[dict, dict | None]:
    """Load weights and optimizer state in place (strict, same architecture, any world size); return rank 0's
    trainer state and this rank's TrainState, or None when the checkpoint had fewer ranks."""
    path = Path(path)
    if not (path / "trainer_state.pt").is_file() or not (path / "dcp").is_dir():
        raise FileNotFoundError(f"{path} is not a vapi training checkpoint (no trainer_state.pt and dcp/)")
    _, config = read_model_config(path / "model")
    saved, current = config.to_dict(), policy.config.to_dict()
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ValueError(f"cannot resume from {path}: it holds another model (differs in {', '.join(diff)}); "
                         "resume with the same generator or start a new output_dir")
    # The templates carry this run's sharding; DCP reads into them whatever the saving run's sharding was.
    state = {"model": get_model_state_dict(policy), "optimizer": get_optimizer_state_dict(policy, optimizer)}
    _dcp(dcp.load, state, path / "dcp")
    set_model_state_dict(policy, state["model"])
    set_optimizer_state_dict(policy, optimizer, state["optimizer"])
    rng = _rng_file(path, rank)
    rank_state = torch.load(rng, map_location="cpu", weights_only=True) if rng.is_file() else None
    return torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True), rank_state
