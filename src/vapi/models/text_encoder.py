"""FLAN-T5 caption features for LlamaGen T2I, computed once and cached on disk.

LlamaGen conditions its T2I GPT on FLAN-T5-XL encoder states (`T5Embedder` in `language/t5.py`): captions are
tokenized to 120 tokens (EOS appended, truncated, padded), run through `T5EncoderModel` (bf16), and the features of
the real tokens are moved to the *end* of the 120 slots with zeros in front; the mask marks them (left padding),
and the GPT hides the padded slots from every query (`LlamaGenGPT.teacher_forced_logits(..., cond_mask)`).
`T5CaptionEncoder(prompts)` returns exactly that as a `PromptCondition` ([B, 120, C] float32 + [B, 120] mask).

The T5 weights come from a local folder or a hub id already in the HF cache (set HF_HUB_OFFLINE=1 offline). Features
of the real tokens ([n, C], in the encoder dtype) are cached per caption under
`<cache_dir>/<encoder key>/<sha256(caption)[:2]>/<sha256(caption)>.safetensors`, where the encoder key hashes the
resolved model folder, its config.json, the names and sizes of its weight files, max_length and dtype. T5 is only
loaded when a caption is missing, and `release()` frees it after precomputing a dataset.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vapi.config import get_dtype, helpf
from vapi.models.protocols import PromptCondition


@dataclass
class TextEncoderConfig:
    path: str = helpf("", "t2i: FLAN-T5 folder or hub id in the HF cache (LlamaGen: google/flan-t5-xl)")
    max_length: int = helpf(0, "caption tokens; 0 = the T2I GPT's cls_token_num (LlamaGen: 120), which it must equal")
    dtype: str = helpf("bf16", "T5 compute dtype, also the cached features' dtype (LlamaGen: bf16)")
    cache_dir: str = helpf("", "feature cache; empty = $VAPI_CACHE_DIR/text_features or ~/.cache/vapi/text_features")
    batch_size: int = helpf(32, "captions per T5 forward when precomputing features")

    def __post_init__(self):
        get_dtype(self.dtype)
        if self.max_length < 0 or self.batch_size < 1:
            raise ValueError("text_encoder.max_length must be >= 0 (0 = the GPT's) and batch_size >= 1")


def default_cache_dir() -> Path:
    root = os.environ.get("VAPI_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "vapi")
    return Path(root) / "text_features"


def resolve_pretrained(name_or_path: str) -> Path:
    """A local model folder, or the HF-cache snapshot folder of a hub id (no download when HF_HUB_OFFLINE=1)."""
    if not name_or_path:
        raise ValueError("text_encoder.path is empty: a T2I GPT needs FLAN-T5 (a folder or a hub id in the HF cache)")
    if os.path.isdir(name_or_path):
        return Path(name_or_path).resolve()
    from transformers.utils import cached_file

    try:
        return Path(cached_file(name_or_path, "config.json")).parent
    except OSError as err:
        from vapi.weights import hf_missing_message

        raise FileNotFoundError(hf_missing_message(name_or_path, "text_encoder.path: the T2I caption encoder")) from err


def encoder_key(folder: Path, max_length: int, dtype: str) -> str:
    weights = sorted((p.name, p.stat().st_size) for p in folder.iterdir()
                     if p.suffix in (".safetensors", ".bin") and p.is_file())
    ident = {"folder": str(folder), "config": (folder / "config.json").read_text(), "weights": weights,
             "max_length": max_length, "dtype": dtype}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def caption_key(caption: str) -> str:
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()


class T5CaptionEncoder:
    """Captions → LlamaGen's left-padded FLAN-T5 condition, through an on-disk feature cache."""

    def __init__(self, cfg: TextEncoderConfig, device: str | torch.device = "cpu"):
        if cfg.max_length < 1:
            raise ValueError("T5CaptionEncoder needs text_encoder.max_length >= 1 (build_policy fills in the GPT's)")
        self.cfg, self.device = cfg, torch.device(device)
        self.folder = resolve_pretrained(cfg.path)
        self.cache_dir = Path(cfg.cache_dir or default_cache_dir()) / encoder_key(self.folder, cfg.max_length,
                                                                                  cfg.dtype)
        self.dim = json.loads((self.folder / "config.json").read_text())["d_model"]
        self._tokenizer = self._model = None
        self.computed = 0  # captions encoded by T5 (not read from the cache) by this object

    # --- the T5 model, loaded on demand ------------------------------------------------------------------------
    def _load(self) -> None:
        from transformers import AutoTokenizer, T5EncoderModel

        self._tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self._model = T5EncoderModel.from_pretrained(self.folder, dtype=get_dtype(self.cfg.dtype)).to(self.device)
        self._model.eval().requires_grad_(False)

    def release(self) -> None:
        """Free the T5 model (features stay on disk)."""
        self._tokenizer = self._model = None

    @torch.no_grad()
    def encode_uncached(self, captions: list[str]) -> list[torch.Tensor]:
        """T5 features of each caption's real tokens: a list of [n_i, C] in the encoder dtype, on the CPU."""
        if self._model is None:
            self._load()
        enc = self._tokenizer(captions, max_length=self.cfg.max_length, padding="max_length", truncation=True,
                              add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        mask = enc["attention_mask"].to(self.device)  # [B, L]
        hidden = self._model(input_ids=enc["input_ids"].to(self.device), attention_mask=mask).last_hidden_state
        self.computed += len(captions)
        return [h[m.bool()].cpu() for h, m in zip(hidden, mask)]  # [n_i, C] each

    # --- the cache ---------------------------------------------------------------------------------------------
    def _path(self, caption: str) -> Path:
        key = caption_key(caption)
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    def _write(self, caption: str, features: torch.Tensor) -> None:
        path = self._path(caption)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"features": features.contiguous()}, tmp, metadata={"caption": caption[:2000]})
            os.replace(tmp, path)  # atomic: concurrent ranks may write the same caption
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def prepare(self, captions: list[str]) -> int:
        """Encode and cache every caption not cached yet; returns how many were computed."""
        missing = sorted({c for c in captions if not self._path(c).is_file()})
        for s in range(0, len(missing), self.cfg.batch_size):
            chunk = missing[s:s + self.cfg.batch_size]
            for caption, feats in zip(chunk, self.encode_uncached(chunk)):
                self._write(caption, feats)
        return len(missing)

    def features(self, caption: str) -> torch.Tensor:
        """[n, C] cached features of one caption (computed and cached first if missing)."""
        path = self._path(caption)
        if not path.is_file():
            self.prepare([caption])
        return load_file(path)["features"]

    def __call__(self, prompts: list[str]) -> PromptCondition:
        """B captions → PromptCondition: features [B, L, C] float32, real tokens last, zeros before; mask [B, L]."""
        self.prepare(prompts)
        L = self.cfg.max_length
        inputs = torch.zeros(len(prompts), L, self.dim)  # [B, L, C]
        mask = torch.zeros(len(prompts), L, dtype=torch.long)  # [B, L]
        for i, caption in enumerate(prompts):
            feats = self.features(caption)  # [n, C]
            n = feats.shape[0]
            inputs[i, L - n:] = feats.float()
            mask[i, L - n:] = 1
        return PromptCondition(inputs, mask)
