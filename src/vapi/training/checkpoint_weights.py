"""Where a training checkpoint keeps the model's weights: once, in `model/`.

`model/` (safetensors, the folder `vapi sample` and `vapi convert` read) holds the full trained model; `dcp/` holds
the optimizer and only the model tensors `model/` cannot give back. That is nothing for a full fine-tune (the
policy, or the VQ for `objective.name=tokenizer`) and the LoRA adapters for LoRA: `model/` holds merged weights
(W + α/r · B A), so the adapters A, B go to `dcp/` (they are small) and the frozen base W is the run's pretrained
weights (`model.gpt`), loaded again at the start of the resumed run and checked against `model/` here.

Checkpoints of older vapi versions keep the whole model in `dcp/` too: what `dcp/` holds is read from `dcp/`, the rest
from `model/`. On resume every rank reads `model/` itself (the run folder is shared) and keeps its shard of each
tensor (`set_model_state_dict(full_state_dict=True)`), so a checkpoint resumes on any world size, DDP or FSDP2.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

from vapi.models.infer_config import CheckpointError
from vapi.models.lora import ADAPTER, adapter_state_dict, is_base_key, merged_key, merged_state_dict
from vapi.models.weights_io import read_saved_weights
from vapi.training.parallelize import full_value

MODEL = "model"  # the entry of dcp/'s state dict that holds model tensors


def dcp_model_state(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What `dcp/` keeps of the model, as this rank holds it (FSDP2: its shards): the LoRA adapters, else nothing."""
    return adapter_state_dict(get_model_state_dict(policy))


def dcp_model_keys(metadata) -> set[str]:
    """The model keys a `dcp/` checkpoint holds, from its metadata (every key, in checkpoints of older vapi)."""
    prefix = f"{MODEL}."
    return {k[len(prefix):] for k in metadata.state_dict_metadata if k.startswith(prefix)}


def tied_names(policy: torch.nn.Module) -> dict[str, set[str]]:
    """name → the other state-dict names of the same parameter, for tied weights (Janus's lm_head and embeddings)."""
    by_param: dict[int, set[str]] = {}
    for name, param in policy.named_parameters(remove_duplicate=False):
        by_param.setdefault(id(param), set()).add(name)
    return {name: names - {name} for names in by_param.values() if len(names) > 1 for name in names}


def unmatched_keys(policy_keys, saved_keys, in_dcp, tied: dict[str, set[str]]) -> tuple[list[str], list[str]]:
    """(missing, unexpected): policy keys that neither `dcp/` nor `model/` gives (a LoRA base counts as given by its
    merged weight, a tied weight by its twin), and `model/` keys the policy has no place for."""
    given = set(in_dcp) | {k for k in policy_keys if merged_key(k) in saved_keys}
    missing = [k for k in policy_keys if k not in given and not tied.get(k, set()) & given]
    placed = {merged_key(k) for k in policy_keys}
    return sorted(missing), sorted(k for k in saved_keys if k not in placed)


def load_model_weights(folder: Path, policy: torch.nn.Module, in_dcp: set[str]) -> dict[str, torch.Tensor]:
    """Every rank: load the tensors of `folder` (a checkpoint's `model/`) that `dcp/` does not hold into `policy`,
    sharded as the policy is. Returns {LoRA base key: its merged weight in `folder`}, for `check_lora_base`."""
    keys = list(get_model_state_dict(policy))
    if set(keys) <= in_dcp:  # an older checkpoint: dcp/ holds the whole model
        return {}
    saved = read_saved_weights(policy, folder)
    missing, unexpected = unmatched_keys(keys, saved, in_dcp, tied_names(policy))
    if missing or unexpected:
        some = ", ".join((missing + unexpected)[:3])
        raise CheckpointError(f"{folder}: does not fit this policy ({len(missing)} weights missing, {len(unexpected)} "
                              f"unexpected: {some}); the checkpoint is incomplete or of another model: resume from "
                              "another one")
    take = {k: saved[k] for k in keys if k in saved and k not in in_dcp}
    set_model_state_dict(policy, take, options=StateDictOptions(full_state_dict=True, strict=False))
    return {k: saved[merged_key(k)] for k in keys if is_base_key(k) and k.endswith(".weight") and k not in in_dcp}


def check_lora_base(policy: torch.nn.Module, merged: dict[str, torch.Tensor], folder: Path) -> None:
    """Every rank, once the adapters are loaded: base + α/r · B A gives `folder`'s merged weights again, i.e. the
    base this run loaded from `model.gpt` is the one the checkpoint was trained on. The tolerance allows for the
    merge being recomputed on another device or dtype (a few ulps); another base differs by the weights' scale."""
    if not merged:
        return
    state = get_model_state_dict(policy)
    for key in sorted(merged):  # the same order on every rank: full_value gathers FSDP2 shards
        module = key.split(".base_layer.")[0]
        parts = {k: full_value(state[k]).detach().cpu() for k in
                 (key, f"{module}.lora_A.{ADAPTER}.weight", f"{module}.lora_B.{ADAPTER}.weight")}
        got, want = merged_state_dict(policy, parts)[merged_key(key)].float(), merged[key].float()
        if got.shape != want.shape or (got - want).abs().max() > 1e-2 * want.abs().max() + 1e-6:
            raise CheckpointError(f"cannot resume from {folder.parent}: the LoRA base weights this run loaded differ "
                                  f"from those it was trained on ({merged_key(key)}); resume with the same model.gpt")
