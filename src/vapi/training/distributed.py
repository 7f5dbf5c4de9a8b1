"""One device-agnostic process-group set-up and the few collectives vapi needs.

`init_distributed(device)` reads torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
NCCL with one GPU per process (cuda:LOCAL_RANK) on CUDA, gloo on CPU. Without torchrun it starts nothing, and
every helper below is then a no-op, so the same code runs on a laptop CPU, one GPU and N nodes × 8 GPUs:

    python -m vapi train --config c.yaml                          # one process
    torchrun --nproc_per_node 8 -m vapi train --config c.yaml     # 8 ranks, DDP (or train.parallel=fsdp)

Only `python -m vapi` ends through `exit_process`, which works around torch 2.14.1 sometimes aborting at
interpreter exit after a successful distributed run (torchrun would then report a failure).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0  # rank within the node: the GPU index under torchrun
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    is_distributed: bool = False  # a process group is up (launched by torchrun)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def torchrun_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) when run directly."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        return rank, world, int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as e:
        raise ValueError(f"bad RANK / WORLD_SIZE / LOCAL_RANK in the environment: {e}") from None


def resolve_device(name: str, local_rank: int | None = None, option: str = "train.device") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' → a device; under torchrun (local_rank given) CUDA means cuda:LOCAL_RANK.
    `option` names the setting in error messages (`--device` for the commands)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{option}={name} but no CUDA device is available; use {option}=cpu")
    if local_rank is not None and name.startswith("cuda"):
        if name != "cuda" and torch.device(name).index != local_rank:
            raise ValueError(f"under torchrun every process uses cuda:LOCAL_RANK; got device={name} on local rank "
                             f"{local_rank}: use device=cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join torchrun's process group (idempotent) or, outside torchrun, just pick the device."""
    if not launched_by_torchrun():
        return DistInfo(device=resolve_device(device_name))
    rank, world, local_rank = torchrun_env()
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Binding the GPU at init lets NCCL set up eagerly and makes barrier() use the right device.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return DistInfo(rank, local_rank, world, device, True)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over ranks (a new tensor). SUM then divide: gloo has no AVG."""
    if not _active():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` (same shape on all ranks) concatenated along dim 0, in rank order."""
    if not _active():
        return x
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts)


def reduce_metrics(metrics: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average scalar metrics over ranks in one collective; every rank must pass the same keys."""
    if not _active():
        return metrics
    keys = sorted(metrics)
    values = all_reduce_mean(torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=device))
    return dict(zip(keys, values.tolist()))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup(wait: bool = True) -> None:
    """Leave the process group: barrier (so no rank tears down under another's collective), then destroy."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:
        barrier()
    dist.destroy_process_group()


def exit_process(code: int) -> None:
    """End `python -m vapi`: after a distributed run, leave the group and `os._exit`, because torch 2.14.1 sometimes
    aborts in its exit-time destructors ("terminate called without an active exception") after the work succeeded.
    A failed rank skips the barrier: the others may never reach it."""
    if not (dist.is_available() and dist.is_initialized()):
        sys.exit(code)
    cleanup(wait=code == 0)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
