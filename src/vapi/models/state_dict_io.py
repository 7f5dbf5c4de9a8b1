"""Reading model state dicts from disk: LlamaGen's official pickles (safely), safetensors files, model folders.

Official `.pt/.pth/.bin` files are unpickled with `torch.load(weights_only=True)` and only `argparse.Namespace`
allowlisted (LlamaGen training checkpoints pickle their `args`). A file that needs any other global (a custom
class, `os.system`, ...) is refused before anything in it runs. Accepted containers, in order of preference:
`model` (LlamaGen), `module` (DeepSpeed), `state_dict` (Lightning), `ema` (or `ema` first with `prefer_ema`), or
a bare state dict (FSDP-consolidated). `module.` / `_orig_mod.` / FSDP wrapper prefixes are stripped.

Folders are vapi's own layout (`config.json` with `config`) or the golden-fixture layout (`model_args`,
`encoder_args`, `weights`); both keep weights in safetensors, possibly HF-sharded with `model.safetensors.index.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import pickletools
import re
import typing
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file

from vapi.models.classifier import ClassifierConfig
from vapi.models.infer_config import CLASSIFIER_KIND, GPT_KIND, VQ_KIND, CheckpointError
from vapi.models.llamagen_gpt import GPTConfig
from vapi.models.llamagen_vq import VQConfig

SAFE_GLOBALS = [argparse.Namespace]
CONTAINER_KEYS = ("model", "module", "state_dict", "ema")
_WRAPPER_PARTS = ("_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")  # compile / FSDP / AC
CONFIG_CLASSES = {GPT_KIND: GPTConfig, VQ_KIND: VQConfig, CLASSIFIER_KIND: ClassifierConfig}
WEIGHTS_NAME, INDEX_NAME = "model.safetensors", "model.safetensors.index.json"


# ---------------------------------------------------------------- official pickles
def _blocked_global(err: BaseException) -> str | None:
    text = f"{err} {err.__cause__ or ''} {err.__context__ or ''}"
    m = re.search(r"GLOBAL ([\w.]+)", text)
    return m.group(1) if m else None


def _pickle_is_complete(path: Path) -> bool:
    """True when the pickle(s) parse to STOP: tells a blocked global apart from a name cut by truncation."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next(n for n in z.namelist() if n.endswith("data.pkl"))
                for _ in pickletools.genops(z.read(name)):
                    pass
            return True
        with open(path, "rb") as f:  # legacy format: magic, protocol, sys_info, then the data pickle
            for _ in range(4):
                if not f.read(1):
                    return True
                f.seek(-1, os.SEEK_CUR)
                for _ in pickletools.genops(f):
                    pass
        return True
    except Exception:
        return False


RESAVE_ADVICE = ("Re-save the weights alone, e.g. torch.save({'model': model.state_dict()}, path), from a trusted "
                 "environment")


def load_torch_file(path: str | Path, safe_globals=tuple(SAFE_GLOBALS), advice: str = RESAVE_ADVICE):
    """`torch.load(weights_only=True)` of a .pt/.pth/.bin file onto the CPU, allowing tensors, plain containers and the
    `safe_globals` classes only: a file that needs any other global (code) is refused before anything in it runs.
    vapi's one loader of torch files (training state goes through it too, with no extra class allowed). Errors are
    one-line CheckpointErrors naming the file (refused code ends with `advice`); FileNotFoundError passes through."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        name = _blocked_global(e)
        if name and _pickle_is_complete(path):
            kinds = ["tensors", "plain containers", *(f"{g.__module__}.{g.__qualname__}" for g in safe_globals)]
            raise CheckpointError(
                f"{path} holds code objects ({name}) that vapi refuses to execute: only {', '.join(kinds[:-1])} and "
                f"{kinds[-1]} are loaded" + (f". {advice}" if advice else "")) from None
        detail = str(e).splitlines()[0][:120]
        raise CheckpointError(f"{path} is truncated or corrupt, or not a PyTorch checkpoint ({detail})") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError, zipfile.BadZipFile) as e:
        if isinstance(e, FileNotFoundError):
            raise
        detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is truncated or corrupt, or not a PyTorch checkpoint ({detail})") from None


def _is_state_dict(obj) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def _unwrap(obj, path: Path, prefer_ema: bool) -> dict[str, torch.Tensor]:
    """Pick the weights out of a LlamaGen/DeepSpeed/Lightning container (or take a bare state dict)."""
    keys, taken = (("ema",) if prefer_ema else CONTAINER_KEYS), None
    for _ in range(3):  # containers may nest (e.g. {"state_dict": {"model": ...}})
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or checkpoint dict")
        if _is_state_dict(obj):
            if prefer_ema and taken != "ema":
                raise CheckpointError(f"{path} has no 'ema' weights (it holds plain model weights)")
            return _strip_prefixes(dict(obj))
        key = next((k for k in keys if k in obj), None)
        if key is None and prefer_ema:
            raise CheckpointError(f"{path} has no 'ema' weights (top-level keys: {', '.join(map(str, list(obj)[:8]))})")
        if key is None:
            raise CheckpointError(f"{path} has no model weights under {' / '.join(keys)} and is not a bare state "
                                  f"dict (top-level keys: {', '.join(map(str, list(obj)[:8]))})")
        taken, obj = key, obj[key]
    raise CheckpointError(f"{path}: could not find a state dict inside the checkpoint")


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        for part in _WRAPPER_PARTS:
            k = k.replace(part, "")
        out[k] = v
    while out and all(k.startswith("module.") for k in out):  # DDP, possibly twice (DDP around DeepSpeed)
        out = {k[len("module."):]: v for k, v in out.items()}
    return out


# ---------------------------------------------------------------- safetensors files and folders
def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error type for bad headers / short files
        raise CheckpointError(f"{path} is truncated or corrupt ({str(e).splitlines()[0][:160]})") from None


def read_model_config(folder: str | Path) -> tuple[str, GPTConfig | VQConfig]:
    """(kind, config) of a vapi folder (`config`) or a fixture folder (`model_args` + VQ `encoder_args`)."""
    folder = Path(folder)
    meta = _read_folder_json(folder)
    if meta.get("model_type") == "janus":  # a transformers Janus folder (vapi.models.janus)
        from vapi.models.janus import JanusArchitecture

        return "janus", JanusArchitecture.from_folder(folder)
    kind = meta.get("kind")
    if kind not in CONFIG_CLASSES:
        raise CheckpointError(f"{folder}/config.json: unknown kind {kind!r}; "
                              f"expected one of {', '.join(CONFIG_CLASSES)}")
    if "config" in meta:
        fields = dict(meta["config"])
    elif "model_args" in meta:
        fields = dict(meta["model_args"])
        enc = meta.get("encoder_args", {})  # fixtures pass the VQ width the reference hard-codes to 128
        fields.update({k: enc[k] for k in ("ch", "num_res_blocks") if k in enc and kind == VQ_KIND})
    else:
        raise CheckpointError(f"{folder}/config.json has neither 'config' nor 'model_args'")
    cls = CONFIG_CLASSES[kind]
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise CheckpointError(f"{folder}/config.json has {cls.__name__} fields vapi does not know: "
                              f"{', '.join(unknown)}")
    types = typing.get_type_hints(cls)
    wrong = [f"{k}={v!r}" for k, v in fields.items()
             if types.get(k) in (int, float) and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    if wrong:
        raise CheckpointError(f"{folder}/config.json: {cls.__name__} fields must be numbers: {', '.join(wrong)}")
    try:
        return kind, cls(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder}/config.json: invalid {cls.__name__} ({e})") from None


def _read_folder_json(folder: Path) -> dict:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{folder} is not a vapi model folder (no config.json)")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg} is not valid JSON ({e})") from None


def shard_name(folder: Path, name) -> str:
    """A weight file named by an index or config.json: a plain .safetensors file name inside the folder (never a
    path that leaves it)."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") or \
            not name.endswith(".safetensors"):
        raise CheckpointError(f"{folder}: weight file {name!r} is not a .safetensors file name inside the folder "
                              "(paths and other formats are refused): fix the index or config.json")
    return name


def read_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a vapi/fixture folder: the index's shards, the fixture's `weights` list, or model.safetensors."""
    index = folder / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise CheckpointError(f"{index} is not a safetensors index (JSON with a weight_map of tensor name → "
                                  f"shard file): rewrite it or remove it and keep one {WEIGHTS_NAME}") from None
    else:
        files = _read_folder_json(folder).get("weights", [WEIGHTS_NAME])
        weight_map = None
    sd: dict[str, torch.Tensor] = {}
    for name in files:
        sd.update(load_safetensors(folder / shard_name(folder, name)))
    if weight_map is not None and set(sd) != set(weight_map):
        missing = sorted(set(weight_map) - set(sd))
        raise CheckpointError(f"{folder}: shards do not match {INDEX_NAME} ({len(missing)} indexed keys missing)")
    return sd


def load_state_dict_file(path: str | Path, prefer_ema: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of an official `.pt/.pth/.bin`, a `.safetensors` file, or a vapi/fixture folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if path.is_dir():
        return read_folder_weights(path)
    if path.suffix == ".safetensors":
        return _strip_prefixes(load_safetensors(path))
    return _unwrap(load_torch_file(path), path, prefer_ema)


