"""Read LlamaGen GPT / VQ configs back from state-dict shapes.

Official LlamaGen checkpoints hold weights only (plus a training `args` Namespace vapi never trusts), so the config
is rebuilt from tensor shapes. What the shapes cannot tell, and where it comes from instead:
- the GPT head count when `n_kv_head == n_head` (`wqkv` is [3*dim, dim] for any head count): the preset with the
  same width and depth, or an explicit `n_head`; given `n_head`, the `wqkv` rows reveal the kv heads (GQA);
- the image size (the RoPE table is not stored): given, else the number ending a LlamaGen file name
  (`c2i_XXL_384.pt` → 384; a quantity absent from the weights, never used to pick a model size), else 256;
- whether the class table has the CFG null row: LlamaGen always trains with class dropout, so classes = rows − 1
  (pass `class_dropout_prob=0` to read every row as a class);
- the t2i caption length: 120 (LlamaGen's `cls_token_num` for T5 captions);
- the VQ GroupNorm groups and codebook l2-normalisation: the reference values (32, True).
Works on `meta` tensors, so presets can be checked without allocating weights.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from vapi.models.llamagen_gpt import GPT_PRESETS, UNCOND_CAPTION_TOKENS, GPTConfig
from vapi.models.llamagen_vq import VQ_PRESETS, VQConfig

GPT_KIND, VQ_KIND = "llamagen_gpt", "llamagen_vq"
CLASSIFIER_KIND = "classifier"  # vapi's small feature/evaluation networks (vapi pretrain features)
GPT_DOWNSAMPLE = 16  # VQ-16, the tokenizer every published LlamaGen GPT was trained with
DEFAULT_IMAGE_SIZE = 256
_VQ_PRESET_DEFAULTS = dict(ch=128, z_channels=256, num_res_blocks=2)  # what VQModel hard-codes for VQ-16 / VQ-8


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message is one line for the CLI."""


def detect_kind(state_dict: Mapping[str, torch.Tensor], source: object = "state dict") -> str:
    """'llamagen_gpt' or 'llamagen_vq', from the keys."""
    if "tok_embeddings.weight" in state_dict:
        return GPT_KIND
    if "quantize.embedding.weight" in state_dict:
        return VQ_KIND
    keys = ", ".join(list(state_dict)[:4]) or "no keys"
    raise CheckpointError(f"{source}: neither LlamaGen GPT nor VQ weights (no tok_embeddings.weight or "
                          f"quantize.embedding.weight; first keys: {keys})")


def token_grid(image_size: int, downsample: int) -> int:
    """Tokens on a side of an `image_size`-px image: the loaders' one check that it is a multiple of `downsample`."""
    if image_size <= 0 or image_size % downsample:
        raise CheckpointError(f"image size {image_size} is not divisible by the tokenizer's downsample factor "
                              f"{downsample}; use a multiple of {downsample}")
    return image_size // downsample


def image_size_from_filename(path: str | Path) -> int | None:
    """The LlamaGen naming convention `c2i_B_256.pt`, `t2i_XL_stage1_256.pt` → 256; None when absent."""
    m = re.search(r"(?:^|[_-])(\d{3,4})$", Path(path).stem)
    return int(m.group(1)) if m else None


def describe_gpt_presets() -> str:
    return ", ".join(f"{k} (dim {v['dim']}, {v['n_layer']} layers)" for k, v in GPT_PRESETS.items())


def gpt_preset_name(cfg: GPTConfig) -> str | None:
    """The preset whose dim, depth and heads this config has (None for custom sizes)."""
    size = dict(dim=cfg.dim, n_layer=cfg.n_layer, n_head=cfg.n_head)
    return next((k for k, v in GPT_PRESETS.items() if v == size), None)


def vq_preset_name(cfg: VQConfig) -> str | None:
    """'VQ-16' / 'VQ-8' when the config is that reference tokenizer (ch 128, z 256, 2 res blocks), else None."""
    if any(getattr(cfg, k) != v for k, v in _VQ_PRESET_DEFAULTS.items()):
        return None
    return next((k for k, v in VQ_PRESETS.items()
                 if v["encoder_ch_mult"] == list(cfg.encoder_ch_mult)
                 and v["decoder_ch_mult"] == list(cfg.decoder_ch_mult)), None)


def _indices(state_dict: Mapping, prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := pat.match(k))})


def _shape(state_dict: Mapping, key: str, kind: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"not a LlamaGen {kind} state dict: it has no {key!r}")
    return tuple(state_dict[key].shape)


def gpt_size_from_shapes(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, int, int]:
    """(vocab_size, dim, n_layer) of a GPT state dict."""
    vocab, dim = _shape(state_dict, "tok_embeddings.weight", "GPT")
    return vocab, dim, len(_indices(state_dict, "layers."))


def infer_gpt_config(state_dict: Mapping[str, torch.Tensor], image_size: int | None = None, *,
                     preset: str | None = None, downsample: int = GPT_DOWNSAMPLE,
                     **overrides) -> tuple[GPTConfig, str | None]:
    """(GPTConfig, preset name or None) for a LlamaGen GPT state dict.

    `preset` forces the preset's dim/depth/heads (a wrong one then fails the strict load with a suggestion);
    `overrides` are GPTConfig fields set as given (`n_head` is how a custom-size model is read).
    """
    vocab, dim, n_layer = gpt_size_from_shapes(state_dict)
    n_head = overrides.pop("n_head", None)
    if preset is not None:
        if preset not in GPT_PRESETS:
            raise CheckpointError(f"unknown GPT preset {preset!r}; choose one of {', '.join(GPT_PRESETS)}")
        size = dict(GPT_PRESETS[preset])
    elif n_head is not None:
        size = dict(dim=dim, n_layer=n_layer, n_head=int(n_head))
    else:
        match = [v for v in GPT_PRESETS.values() if (v["dim"], v["n_layer"]) == (dim, n_layer)]
        if not match:
            raise CheckpointError(
                f"GPT weights with dim {dim} and {n_layer} layers match no LlamaGen preset "
                f"({describe_gpt_presets()}); the head count is not stored in the weights, so give it "
                f"explicitly (n_head / --n-head) for a custom model")
        size = dict(match[0])

    # wqkv rows = (n_head + 2 * n_kv_head) * head_dim: given the heads, the kv heads follow.
    head_dim = size["dim"] // size["n_head"]
    rows = _shape(state_dict, "layers.0.attention.wqkv.weight", "GPT")[0] if n_layer else size["dim"] * 3
    kv, rem = divmod(rows - size["dim"], 2 * head_dim)
    n_kv_head = kv if rem == 0 and 0 < kv < size["n_head"] and size["n_head"] % kv == 0 else None

    if "cls_embedding.embedding_table.weight" in state_dict:
        rows = state_dict["cls_embedding.embedding_table.weight"].shape[0]
        has_null = overrides.get("class_dropout_prob", 0.1) > 0
        cond = dict(model_type="c2i", num_classes=rows - int(has_null), cls_token_num=1)
    elif "cls_embedding.cap_proj.fc1.weight" in state_dict:
        cond = dict(model_type="t2i", caption_dim=state_dict["cls_embedding.cap_proj.fc1.weight"].shape[1],
                    cls_token_num=UNCOND_CAPTION_TOKENS)
    else:
        raise CheckpointError("GPT weights have neither a class table (cls_embedding.embedding_table) nor a "
                              "caption projection (cls_embedding.cap_proj): unknown conditioning")

    if "block_size" not in overrides:
        image_size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
        overrides["block_size"] = token_grid(image_size, downsample) ** 2
    cfg = GPTConfig(**{**size, **cond, "vocab_size": vocab, "n_kv_head": n_kv_head, **overrides})
    return cfg, gpt_preset_name(cfg)


def _block_widths(state_dict: Mapping, prefix: str) -> tuple[list[int], int]:
    """Output width of each conv block under `prefix` (e.g. 'encoder.conv_blocks.') and the res blocks in the first."""
    levels = _indices(state_dict, prefix)
    if not levels:
        raise CheckpointError(f"not a LlamaGen VQ state dict: no {prefix}* keys")
    widths = []
    for i in levels:
        last = _indices(state_dict, f"{prefix}{i}.res.")[-1]
        widths.append(state_dict[f"{prefix}{i}.res.{last}.conv2.weight"].shape[0])
    return widths, len(_indices(state_dict, f"{prefix}{levels[0]}.res."))


def infer_vq_config(state_dict: Mapping[str, torch.Tensor], *, preset: str | None = None,
                    **overrides) -> tuple[VQConfig, str | None]:
    """(VQConfig, 'VQ-16' | 'VQ-8' | None) for a LlamaGen VQ state dict; `preset` forces its channel multipliers."""
    ch = _shape(state_dict, "encoder.conv_in.weight", "VQ")[0]
    enc_widths, num_res = _block_widths(state_dict, "encoder.conv_blocks.")
    dec_widths, _ = _block_widths(state_dict, "decoder.conv_blocks.")
    codebook_size, embed_dim = _shape(state_dict, "quantize.embedding.weight", "VQ")
    fields = dict(
        ch=ch, num_res_blocks=num_res,
        encoder_ch_mult=[w // ch for w in enc_widths],
        decoder_ch_mult=[w // ch for w in reversed(dec_widths)],  # decoder blocks run from the lowest resolution up
        z_channels=_shape(state_dict, "encoder.conv_out.weight", "VQ")[0],
        codebook_size=codebook_size, codebook_embed_dim=embed_dim,
        codebook_show_usage="quantize.codebook_used" in state_dict,
    )
    if preset is not None:
        if preset not in VQ_PRESETS:
            raise CheckpointError(f"unknown VQ preset {preset!r}; choose one of {', '.join(VQ_PRESETS)}")
        fields.update(VQ_PRESETS[preset])
    cfg = VQConfig(**{**fields, **overrides})
    return cfg, vq_preset_name(cfg)
