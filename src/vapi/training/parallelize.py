"""Data parallelism applied to a generator from outside, in one place (house rule 2): DDP or FSDP2.

`train.parallel`:
  none  one process: the model as is;
  ddp   DistributedDataParallel: a full replica per rank, gradients all-reduced (averaged) in backward;
  fsdp  FSDP2 `fully_shard` (ZeRO-3, as the paper's 8-GPU FSDP runs): parameters, gradients and optimizer state
        sharded over all ranks; on GPU with bf16, parameters are gathered in bf16 and gradients reduced in fp32.
  auto  ddp when world_size > 1, else none.

Order: the model is moved to its device, then (FSDP) each TransformerBlock is sharded, then the root (embeddings,
final norm, head), which must come last so that the root's hooks see the blocks already wrapped. The optimizer is
built afterwards, on the (now sharded) parameters.

Wrappers only act through `forward`: the trainer calls the wrapped model (`LlamaGenGPT.forward` is the
teacher-forced pass), never `model.teacher_forced_logits`, or DDP would not all-reduce and FSDP would not gather.
"""
from __future__ import annotations

import types
from contextlib import nullcontext

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from vapi.training.distributed import DistInfo

PARALLEL = ("auto", "none", "ddp", "fsdp")
# Where each supported generator keeps its repeated transformer blocks, each of which becomes one FSDP unit:
# LlamaGenGPT, then JanusPolicy (a transformers Llama language model).
BLOCK_PATHS = ("layers", "model.model.language_model.layers")


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    for path in BLOCK_PATHS:
        found = model
        for name in path.split("."):
            found = getattr(found, name, None)
        if isinstance(found, nn.ModuleList):
            return found
    raise TypeError(f"FSDP does not know where {type(model).__name__} keeps its transformer blocks; add the path to "
                    f"BLOCK_PATHS in {__name__}")


def _checkpointed_forward(block: nn.Module, *args, **kwargs):
    forward = type(block).forward
    if not torch.is_grad_enabled():
        return forward(block, *args, **kwargs)
    from torch.utils.checkpoint import checkpoint

    return checkpoint(forward, block, *args, use_reentrant=False, **kwargs)


def apply_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Each transformer block keeps only its input for backward and recomputes the rest (non-reentrant
    `torch.utils.checkpoint`, which replays the same dropout masks). Applied before DDP/FSDP, as torchtitan orders
    it; parameter names are unchanged (the block's forward is wrapped, not the module), so checkpoints are too, and a
    deep copy of the model stays bound to its own blocks. Passes without gradients (sampling) run the block as is."""
    for block in transformer_blocks(model):
        block.forward = types.MethodType(_checkpointed_forward, block)
    return model


def resolve_parallel(name: str, info: DistInfo) -> str:
    if name not in PARALLEL:
        raise ValueError(f"train.parallel must be one of {PARALLEL}, got {name!r}")
    if name == "auto":
        return "ddp" if info.world_size > 1 else "none"
    if name != "none" and not info.is_distributed:
        raise ValueError(f"train.parallel={name} needs a process group: launch with "
                         f"`torchrun --nproc_per_node N -m vapi train ...`")
    return name


def apply_ddp(model: nn.Module, info: DistInfo) -> DDP:
    return DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)


def apply_fsdp2(model: nn.Module, mesh, param_dtype: torch.dtype | None = None,
                reduce_dtype: torch.dtype | None = None) -> nn.Module:
    """Shard each TransformerBlock, then the root. Returns the same module (FSDP2 swaps its class in place)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    # Frozen parameters stay whole on every rank: nothing is reduced for them, and some (Janus's VQ and vision
    # towers) are run by the image tokenizer outside the policy's forward, where a shard could not be gathered.
    frozen = {p for p in model.parameters() if not p.requires_grad}
    for block in transformer_blocks(model):
        fully_shard(block, mesh=mesh, mp_policy=mp, ignored_params=frozen or None)
    # The root's parameters are needed again at once in backward: keeping them gathered saves one all-gather.
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=False, ignored_params=frozen or None)
    return model


def parallelize(model: nn.Module, parallel: str, info: DistInfo, bf16: bool = False) -> nn.Module:
    """Wrap `model` (already on info.device) for `parallel` (resolved by `resolve_parallel`)."""
    if parallel == "none":
        return model
    if parallel == "ddp":
        return apply_ddp(model, info)
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(info.device.type, (info.world_size,))
    return apply_fsdp2(model, mesh, param_dtype=torch.bfloat16 if bf16 else None,
                       reduce_dtype=torch.float32 if bf16 else None)


def grad_sync(model: nn.Module, enabled: bool):
    """Context for one micro-batch's forward + backward: DDP skips its all-reduce unless `enabled` (the last
    micro-batch of an optimizer step). FSDP2 reduce-scatters every micro-batch, keeping gradients sharded (the point
    of ZeRO-3); deferring it would hold full unsharded gradients on each rank."""
    if isinstance(model, DDP) and not enabled:
        return model.no_sync()
    return nullcontext()


def full_value(x: torch.Tensor) -> torch.Tensor:
    """A DTensor (e.g. FSDP2's gradient norm) as a plain, replicated tensor; other tensors unchanged."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x
