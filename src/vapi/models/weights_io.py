"""Model weights I/O: load LlamaGen's official checkpoints and vapi model folders, save, export back to LlamaGen.

Not training state (optimizer, step, RNG live in `vapi.training`). Reading files (safe unpickling, containers,
folders) is `vapi.models.state_dict_io`; reading configs from shapes is `vapi.models.infer_config`. Models are built
on the meta device and receive the checkpoint tensors by `assign`, so loading a multi-GB model neither initialises
it randomly nor holds two copies. Loads are strict: a mismatch is one error listing missing / unexpected keys and
shape mismatches, with the preset the shapes do match.

vapi folder: `config.json` {"kind": "llamagen_gpt" | "llamagen_vq", "config": {...}, "vapi_version"} +
`model.safetensors`, or HF-style `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json` above
`max_shard_bytes`. The golden-fixture folders (`model_args` / `encoder_args` / `weights`) load the same way.

    gpt = load_gpt("c2i_B_256.pt")                  # GPT-B, 16x16 tokens, from the shapes and the file name
    save_pretrained(gpt, "gpt_b/")                  # vapi folder (sharded above 2 GB)
    export_llamagen(load_pretrained("gpt_b/"), "c2i_B_256_vapi.pt")
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from vapi.models.classifier import Classifier
from vapi.models.infer_config import (CLASSIFIER_KIND, DEFAULT_IMAGE_SIZE, GPT_DOWNSAMPLE, GPT_KIND, VQ_KIND, CheckpointError,
                                      detect_kind, gpt_preset_name, gpt_size_from_shapes,
                                      image_size_from_filename, infer_gpt_config, infer_vq_config, token_grid,
                                      vq_preset_name)
from vapi.models.llamagen_gpt import GPT_PRESETS, GPTConfig, LlamaGenGPT
from vapi.models.llamagen_vq import VQConfig, VQModel
from vapi.models.protocols import PolicyBundle
from vapi.models.state_dict_io import (INDEX_NAME, WEIGHTS_NAME, load_state_dict_file, read_folder_weights,
                                       read_model_config)

__all__ = ["CheckpointError", "PolicyBundle", "build_generator_and_tokenizer", "build_model",
           "export_llamagen", "infer_gpt_config", "infer_vq_config", "load_gpt", "load_model", "load_pretrained",
           "load_state_dict_file", "load_vq", "read_model_config", "read_saved_weights", "save_pretrained"]

MODEL_CLASSES = {GPT_KIND: LlamaGenGPT, VQ_KIND: VQModel, CLASSIFIER_KIND: Classifier}
DEFAULT_MAX_SHARD_BYTES = 2 * 10**9


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("vapi")
    except Exception:  # running from a source tree that is not installed
        return "0+unknown"


# ---------------------------------------------------------------- building models
def _head(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def _describe(cfg) -> str:
    if isinstance(cfg, GPTConfig):
        name = gpt_preset_name(cfg) or "custom GPT"
        return f"{name} (dim {cfg.dim}, {cfg.n_layer} layers, vocab {cfg.vocab_size}, {cfg.model_type})"
    if not isinstance(cfg, VQConfig):
        return f"{type(cfg).__name__} {cfg.to_dict()}"
    name = vq_preset_name(cfg) or "custom VQ"
    return f"{name} (ch {cfg.ch}, ch_mult {cfg.encoder_ch_mult}, codebook {cfg.codebook_size})"


def _suggestion(kind: str, sd: Mapping, used) -> str:
    try:
        if kind == GPT_KIND:
            _, dim, n_layer = gpt_size_from_shapes(sd)
            match = next((k for k, v in GPT_PRESETS.items() if (v["dim"], v["n_layer"]) == (dim, n_layer)), None)
            if match and match != gpt_preset_name(used):
                return f"the weights have the shapes of {match}: use --gpt-model {match}"
            if not match:
                return f"the weights (dim {dim}, {n_layer} layers) match no LlamaGen preset: omit the preset and " \
                       f"give --n-head for a custom size"
        elif kind == VQ_KIND:
            name = infer_vq_config(sd)[1]
            if name and name != vq_preset_name(used):
                return f"the weights have the shapes of {name}: use --vq-model {name}"
    except (CheckpointError, ValueError):
        pass
    return ""


def _check_fit(model: torch.nn.Module, sd: Mapping, kind: str, source) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {list(sd[k].shape)} in file vs {list(s)} in model" for k, s in expected.items()
              if k in sd and tuple(sd[k].shape) != s]
    floats = {k for k, v in model.state_dict().items() if v.is_floating_point()}
    dtypes = [f"{k} is {sd[k].dtype}" for k in sorted(floats) if k in sd and not sd[k].is_floating_point()]
    if not (missing or unexpected or shapes or dtypes):
        return
    parts = [f"{len(v)} {what} ({_head(v)})" for what, v in
             (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes),
              ("non-float tensors where the model has floats", dtypes)) if v]
    hint = _suggestion(kind, sd, model.config)
    raise CheckpointError(f"{source}: weights do not fit {_describe(model.config)}: {'; '.join(parts)}"
                          + (f"; {hint}" if hint else ""))


def build_model(kind: str, cfg, state_dict: Mapping[str, torch.Tensor], source="state dict",
                dtype: torch.dtype | None = torch.float32):
    """Build the model of `kind` on meta, strictly assign `state_dict` (floats cast to `dtype`), eval mode."""
    cls = MODEL_CLASSES[kind]
    with torch.device("meta"):
        model = cls(cfg)
    _check_fit(model, state_dict, kind, source)
    sd = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in state_dict.items()}
    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensors hold NaN or inf ({_head(bad)}); the weights are corrupt "
                              "(or come from a diverged run): use another checkpoint")
    model.load_state_dict(sd, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a non-persistent buffer the model forgot to create on CPU: a bug in the model, not the file
        raise RuntimeError(f"{cls.__name__} left tensors on the meta device after loading: {_head(left)}")
    if kind == VQ_KIND:
        model.requires_grad_(False)  # the tokenizer is frozen in VA-pi
    return model.eval()


def load_pretrained(folder: str | Path, dtype: torch.dtype | None = torch.float32, **overrides):
    """A vapi or fixture folder → model (GPT or VQ, from `kind`); `overrides` replace config fields."""
    folder = Path(folder)
    kind, cfg = read_model_config(folder)
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    return build_model(kind, cfg, read_folder_weights(folder), folder, dtype)


def _image_size_of_file(path: Path) -> int:
    """An official file stores no image size: from its name, else LlamaGen's 256, said out loud."""
    size = image_size_from_filename(path)
    if size is None:
        warnings.warn(f"{Path(path).name}: the image size is neither in the weights nor in the file name; assuming "
                      f"{DEFAULT_IMAGE_SIZE} px (pass --image-size / model.image_size to set it)", stacklevel=3)
        return DEFAULT_IMAGE_SIZE
    return size


def load_model(path: str | Path, kind: str = "auto", preset: str | None = None, image_size: int | None = None, *,
               prefer_ema: bool = False, downsample: int = GPT_DOWNSAMPLE, dtype: torch.dtype | None = torch.float32,
               **overrides) -> LlamaGenGPT | VQModel:
    """GPT or VQ from an official file or a vapi/fixture folder. `kind`: 'gpt' | 'vq' | 'auto' (from the weights).

    For GPT files the config comes from the shapes (`infer_gpt_config`; `overrides` such as `n_head` for custom
    sizes) and the image size from `image_size`, else the file name, else 256. `preset` forces a size preset.
    """
    if kind not in ("gpt", "vq", "auto"):
        raise CheckpointError(f"kind must be gpt, vq or auto, got {kind!r}")
    path = Path(path)
    if path.is_dir():
        found, cfg = read_model_config(path)
        sd = None
    else:
        sd = load_state_dict_file(path, prefer_ema)
        found = detect_kind(sd, path)
    want = {"gpt": GPT_KIND, "vq": VQ_KIND}.get(kind, found)
    if found != want:
        raise CheckpointError(f"{path} holds {'GPT' if found == GPT_KIND else 'VQ tokenizer'} weights, "
                              f"not {'a GPT' if want == GPT_KIND else 'a VQ tokenizer'}")
    cfg_cls = GPTConfig if found == GPT_KIND else VQConfig
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cfg_cls)})
    if unknown:
        raise CheckpointError(f"{path} holds {'GPT' if found == GPT_KIND else 'VQ tokenizer'} weights: "
                              f"{', '.join(unknown)} is not a {cfg_cls.__name__} setting")
    if sd is None:  # folders carry their config; only the image size (RoPE table) may change
        name = gpt_preset_name(cfg) if found == GPT_KIND else vq_preset_name(cfg)
        if preset is not None and name != preset:
            raise CheckpointError(f"{path} is {_describe(cfg)}, not {preset}")
        clash = [f"{k}={v} (stored {getattr(cfg, k)})" for k, v in overrides.items()
                 if k in ("n_head", "n_kv_head") and v != getattr(cfg, k)]
        if clash:  # the shapes would still fit, so a wrong head count would silently change the outputs
            raise CheckpointError(f"{path}/config.json records the attention heads; {', '.join(clash)} contradicts it")
        if found == GPT_KIND and image_size is not None:
            overrides["block_size"] = token_grid(image_size, downsample) ** 2
        return load_pretrained(path, dtype, **overrides)
    if found == VQ_KIND:
        cfg, _ = infer_vq_config(sd, preset=preset, **overrides)
    else:
        if image_size is None:
            image_size = _image_size_of_file(path)
        cfg, _ = infer_gpt_config(sd, image_size, preset=preset, downsample=downsample, **overrides)
    return build_model(found, cfg, sd, path, dtype)


def load_gpt(path: str | Path, preset: str | None = None, image_size: int | None = None, **kwargs) -> LlamaGenGPT:
    """LlamaGen GPT (eval mode) from an official file or a vapi folder; keyword options as `load_model`."""
    return load_model(path, "gpt", preset, image_size, **kwargs)


def load_vq(path: str | Path, preset: str | None = None, **kwargs) -> VQModel:
    """LlamaGen VQ tokenizer (eval mode, frozen) from an official file or a vapi folder."""
    return load_model(path, "vq", preset, **kwargs)


def build_generator_and_tokenizer(gpt_path: str | Path, vq_path: str | Path, *, gpt_preset: str | None = None,
                                  vq_preset: str | None = None, image_size: int | None = None,
                                  prefer_ema: bool = False, device: str | torch.device = "cpu",
                                  dtype: torch.dtype | None = torch.float32, **gpt_overrides) -> PolicyBundle:
    """Load a GPT and its VQ tokenizer and check they fit: same vocabulary, image size a multiple of the downsample.
    → PolicyBundle(policy=GPT, tokenizer=VQ, prompt_encoder=None, image_size); `build_policy` adds a T2I GPT's."""
    vq = load_vq(vq_path, vq_preset, dtype=dtype)
    gpt_path = Path(gpt_path)
    if image_size is None and not gpt_path.is_dir():
        image_size = _image_size_of_file(gpt_path)
    if image_size is not None:
        token_grid(image_size, vq.downsample)
    gpt = load_gpt(gpt_path, gpt_preset, image_size, prefer_ema=prefer_ema, downsample=vq.downsample, dtype=dtype,
                   **gpt_overrides)
    if gpt.config.vocab_size != vq.config.codebook_size:
        raise CheckpointError(f"the GPT predicts {gpt.config.vocab_size} token ids but the VQ codebook has "
                              f"{vq.config.codebook_size} entries: {gpt_path} and {vq_path} do not belong together")
    size = math.isqrt(gpt.config.block_size) * vq.downsample
    return PolicyBundle(gpt.to(device), vq.to(device), None, size)


# ---------------------------------------------------------------- writing
def _model_kind(model) -> str:
    for kind, cls in MODEL_CLASSES.items():
        if isinstance(model, cls):
            return kind
    raise TypeError(f"cannot save a {type(model).__name__}: expected LlamaGenGPT or VQModel")


def _cpu_state_dict(model, state_dict: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    # A view into a larger storage (or a shared one) is cloned: safetensors refuses shared storage.
    out = {}
    for k, v in (model.state_dict() if state_dict is None else state_dict).items():
        v = v.detach().cpu().contiguous()
        out[k] = v.clone() if v.untyped_storage().nbytes() != v.nbytes else v
    return out


def _shards(sd: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    shards, size = [{}], 0
    for k, v in sd.items():
        if shards[-1] and size + v.nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += v.nbytes
    return shards


def save_pretrained(model, directory: str | Path, *, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                    overwrite: bool = False, state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write a vapi folder atomically: everything goes to a temp folder beside it, which is then renamed.

    `state_dict` replaces `model.state_dict()`, e.g. the full weights gathered from an FSDP-sharded model."""
    dst = Path(directory)
    if hasattr(model, "save_pretrained"):  # a model with its own folder format (vapi.models.janus.JanusPolicy)
        return model.save_pretrained(dst, state_dict=state_dict)
    kind = _model_kind(model)
    if dst.exists() and not overwrite and (not dst.is_dir() or any(dst.iterdir())):
        raise CheckpointError(f"{dst} already exists; choose a new folder or overwrite it explicitly")
    dst.parent.mkdir(parents=True, exist_ok=True)
    sd = _cpu_state_dict(model, state_dict)
    shards = _shards(sd, max_shard_bytes)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        if len(shards) == 1:
            save_file(shards[0], str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        else:
            n, weight_map = len(shards), {}
            for i, shard in enumerate(shards, 1):
                name = f"model-{i:05d}-of-{n:05d}.safetensors"
                save_file(shard, str(tmp / name), metadata={"format": "pt"})
                weight_map.update(dict.fromkeys(shard, name))
            index = {"metadata": {"total_size": sum(v.nbytes for v in sd.values())}, "weight_map": weight_map}
            (tmp / INDEX_NAME).write_text(json.dumps(index, indent=1))
        meta = {"kind": kind, "config": model.config.to_dict(), "vapi_version": _version()}
        (tmp / "config.json").write_text(json.dumps(meta, indent=1))
        _swap_in(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def read_saved_weights(model, directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors `save_pretrained(model, directory)` wrote, keyed as `model.state_dict()` is (safetensors: nothing
    is unpickled). A weight an HF folder leaves out because it is tied to another (Janus's lm_head) is absent."""
    prefix = getattr(model, "folder_key_prefix", "")
    return {prefix + k: v for k, v in read_folder_weights(Path(directory)).items()}


def _swap_in(tmp: Path, dst: Path) -> None:
    if not dst.exists() or (dst.is_dir() and not any(dst.iterdir())):
        os.replace(tmp, dst)  # replaces an empty folder atomically
        return
    old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(dst, old)
    try:
        os.replace(tmp, dst)
    except BaseException:
        os.replace(old, dst)
        raise
    shutil.rmtree(old) if old.is_dir() else old.unlink()


def export_llamagen(model, path: str | Path) -> Path:
    """Write `{"model": state_dict}` to a `.pt` that LlamaGen's own code loads (`checkpoint["model"]`)."""
    path = Path(path)
    _model_kind(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        torch.save({"model": _cpu_state_dict(model)}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
