"""LlamaGen GPT: the class- and text-conditional autoregressive image-token transformer.

One architecture, its config dataclass and its size presets. State-dict names and shapes are those of
LlamaGen's `autoregressive/models/gpt.py`, so official checkpoints load strictly. Conventions that must match
(see `shared/fixtures/README.md`): 2-D RoPE over the token grid, prefixed by `cls_token_num` zero rows so the
condition positions carry values but no rotary phase; SwiGLU FFN; fused `wqkv`; RMSNorm in float32; the null class
is index `num_classes`; the null caption is the learned buffer `cls_embedding.uncond_embedding`.

Where the reference breaks, this one works:
- KV-cache generation with grouped-query attention (the cache stores `n_kv_head` heads, expanded at use);
- CFG for captions of any length (the null caption is `uncond_embedding` cut or extended to the caption length);
- teacher forcing never touches the KV cache (the reference writes into it when one is set up).
Generation itself lives in `vapi.sampling`; wrapping, precision and checkpoint I/O live outside this file.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from vapi.models.protocols import PromptCondition

UNCOND_CAPTION_TOKENS = 120  # LlamaGen hard-wires the null caption buffer to 120 rows


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


@dataclass
class GPTConfig:
    """Every field of LlamaGen's `ModelArgs`, with its defaults (the reference dropouts are VA-π's too)."""

    dim: int = 4096
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int | None = None
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000
    norm_eps: float = 1e-5
    initializer_range: float = 0.02
    token_dropout_p: float = 0.1
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.1
    ffn_dropout_p: float = 0.1
    drop_path_rate: float = 0.0
    num_classes: int = 1000
    caption_dim: int = 2048
    class_dropout_prob: float = 0.1
    model_type: str = "c2i"
    vocab_size: int = 16384
    cls_token_num: int = 1
    block_size: int = 256
    max_batch_size: int = 32
    max_seq_len: int = 2048

    def __post_init__(self):
        if self.model_type not in ("c2i", "t2i"):
            raise ValueError(f"model_type must be 'c2i' or 't2i', got {self.model_type!r}")
        if self.dim % self.n_head:
            raise ValueError(f"dim {self.dim} is not divisible by n_head {self.n_head}")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head {self.n_head} is not divisible by n_kv_head {self.kv_heads}")
        grid = math.isqrt(self.block_size)
        if grid * grid != self.block_size:
            raise ValueError(f"block_size {self.block_size} must be a square number of image tokens (grid²)")
        if (self.dim // self.n_head) % 4:
            raise ValueError(f"head_dim {self.dim // self.n_head} must be divisible by 4 for 2-D RoPE")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def ffn_hidden(self) -> int:
        hidden = int(2 * 4 * self.dim / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return find_multiple(hidden, self.multiple_of)

    def to_dict(self) -> dict:
        return asdict(self)


# Published LlamaGen sizes (GPT_models in the reference); the remaining fields come from the checkpoint.
GPT_PRESETS: dict[str, dict] = {
    "GPT-B": dict(n_layer=12, n_head=12, dim=768),
    "GPT-L": dict(n_layer=24, n_head=16, dim=1024),
    "GPT-XL": dict(n_layer=36, n_head=20, dim=1280),
    "GPT-XXL": dict(n_layer=48, n_head=24, dim=1536),
    "GPT-XXXL": dict(n_layer=48, n_head=40, dim=2560),
    "GPT-1B": dict(n_layer=22, n_head=32, dim=2048),
    "GPT-3B": dict(n_layer=24, n_head=32, dim=3200),
    "GPT-7B": dict(n_layer=32, n_head=32, dim=4096),
}


def gpt_config(preset: str, **overrides) -> GPTConfig:
    if preset not in GPT_PRESETS:
        raise ValueError(f"unknown GPT preset {preset!r}; choose one of {', '.join(GPT_PRESETS)}")
    return GPTConfig(**{**GPT_PRESETS[preset], **overrides})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class LabelEmbedder(nn.Module):
    """Class embedding; the extra last row is the null class used for CFG (only when class dropout > 0)."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim)

    def forward(self, labels: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels).unsqueeze(1)  # [B, 1, D]


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    """Projects text-encoder features; `uncond_embedding` is the learned null caption (a buffer, as the reference)."""

    def __init__(self, caption_dim: int, dim: int, dropout_prob: float):
        super().__init__()
        self.dropout_prob = dropout_prob
        self.cap_proj = MLP(caption_dim, dim, dim)
        self.register_buffer("uncond_embedding", torch.randn(UNCOND_CAPTION_TOKENS, caption_dim) / caption_dim**0.5)

    def null_caption(self, batch: int, length: int) -> torch.Tensor:
        """The null caption at any length: the first rows, repeating the last one past 120 tokens."""
        rows = torch.arange(length, device=self.uncond_embedding.device).clamp(max=UNCOND_CAPTION_TOKENS - 1)
        return self.uncond_embedding[rows].unsqueeze(0).expand(batch, -1, -1)  # [B, L, C]

    def forward(self, caption: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.dropout_prob > 0:
            drop = torch.rand(caption.shape[0], device=caption.device) < self.dropout_prob
            null = self.null_caption(caption.shape[0], caption.shape[1]).to(caption.dtype)
            caption = torch.where(drop[:, None, None], null, caption)
        return self.cap_proj(caption)  # [B, L, D]


class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.dim, bias=False)
        self.ffn_dropout = nn.Dropout(cfg.ffn_dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class KVCache(nn.Module):
    """Keys/values of the `n_kv_head` heads for every position written so far (GQA-sized, unlike the reference)."""

    def __init__(self, batch: int, max_len: int, n_kv_head: int, head_dim: int, dtype: torch.dtype, device):
        super().__init__()
        shape = (batch, n_kv_head, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        self.k[:, :, input_pos] = k
        self.v[:, :, input_pos] = v
        end = int(input_pos[-1]) + 1
        return self.k[:, :, :end], self.v[:, :, :end]


def apply_rotary_emb(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs. x: [B, L, H, Dh]; freqs_cis: [L, Dh/2, 2] (cos, sin)."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)  # [B, L, H, Dh/2, 2]
    fc = freqs_cis.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack(
        [xs[..., 0] * fc[..., 0] - xs[..., 1] * fc[..., 1], xs[..., 1] * fc[..., 0] + xs[..., 0] * fc[..., 1]], dim=-1
    )
    return out.flatten(3).type_as(x)


def precompute_freqs_cis_2d(grid_size: int, head_dim: int, base: float, cls_token_num: int) -> torch.Tensor:
    """[cls_token_num + grid², head_dim/2, 2]: row frequencies then column frequencies, condition rows zero."""
    half = head_dim // 2
    # Explicitly on CPU, so a model built under torch.device("meta") (checkpoint loading) still gets a real table.
    freqs = 1.0 / (base ** (torch.arange(0, half, 2, device="cpu")[: half // 2].float() / half))  # [Dh/4]
    t = torch.arange(grid_size, dtype=torch.float32, device="cpu")
    freqs = torch.outer(t, freqs)  # [grid, Dh/4]
    grid = torch.cat(
        [freqs[:, None, :].expand(-1, grid_size, -1), freqs[None, :, :].expand(grid_size, -1, -1)], dim=-1
    )  # [grid, grid, Dh/2]
    cache = torch.stack([torch.cos(grid), torch.sin(grid)], dim=-1).flatten(0, 1)  # [grid², Dh/2, 2]
    return torch.cat([torch.zeros(cls_token_num, half, 2, device="cpu"), cache])


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim, self.dim = cfg.n_head, cfg.kv_heads, cfg.head_dim, cfg.dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout_p = cfg.attn_dropout_p
        self.resid_dropout = nn.Dropout(cfg.resid_dropout_p)
        self.kv_cache: KVCache | None = None

    def forward(self, x, freqs_cis, input_pos=None, mask=None, use_cache=False):
        B, L, _ = x.shape
        kv = self.n_kv_head * self.head_dim
        q, k, v = self.wqkv(x).split([self.dim, kv, kv], dim=-1)
        q = apply_rotary_emb(q.view(B, L, self.n_head, self.head_dim), freqs_cis)
        k = apply_rotary_emb(k.view(B, L, self.n_kv_head, self.head_dim), freqs_cis)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.view(B, L, self.n_kv_head, self.head_dim).transpose(1, 2)
        if use_cache:
            k, v = self.kv_cache.update(input_pos, k, v)  # [B, Hkv, S, Dh], S = positions so far
        rep = self.n_head // self.n_kv_head  # kv head j serves q heads j*rep .. j*rep+rep-1
        if rep > 1:  # (repeat_interleave copies even when rep is 1: the whole KV cache at every decoding step)
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(
            # A single decoding query sees every cached key; longer unmasked inputs are causal from position 0.
            q, k, v, attn_mask=mask, is_causal=mask is None and L > 1,
            dropout_p=self.attn_dropout_p if self.training else 0.0,
        )  # [B, H, L, Dh]
        return self.resid_dropout(self.wo(out.transpose(1, 2).reshape(B, L, self.dim)))


class DropPath(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig, drop_path: float):
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, freqs_cis, input_pos=None, mask=None, use_cache=False):
        h = x + self.drop_path(self.attention(self.attention_norm(x), freqs_cis, input_pos, mask, use_cache))
        return h + self.drop_path(self.feed_forward(self.ffn_norm(h)))


class LlamaGenGPT(nn.Module):
    """The LlamaGen transformer. `teacher_forced_logits` is what VA-π trains; `prefill`/`decode` serve sampling."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        if cfg.model_type == "c2i":
            self.cls_embedding = LabelEmbedder(cfg.num_classes, cfg.dim, cfg.class_dropout_prob)
        else:
            self.cls_embedding = CaptionEmbedder(cfg.caption_dim, cfg.dim, cfg.class_dropout_prob)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.tok_dropout = nn.Dropout(cfg.token_dropout_p)
        rates = [x.item() for x in torch.linspace(0, cfg.drop_path_rate, cfg.n_layer, device="cpu")]
        self.layers = nn.ModuleList(TransformerBlock(cfg, r) for r in rates)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # A plain attribute, not a buffer: LlamaGen's state dict has no RoPE table.
        self.freqs_cis = precompute_freqs_cis_2d(math.isqrt(cfg.block_size), cfg.head_dim, cfg.rope_base,
                                                 cfg.cls_token_num)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """LlamaGen's init: N(0, initializer_range) for Linear/Embedding, zero output layer."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
        nn.init.zeros_(self.output.weight)

    @property
    def num_image_tokens(self) -> int:
        return self.config.block_size

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def _freqs(self, positions: torch.Tensor, device) -> torch.Tensor:
        if self.freqs_cis.device != device:
            self.freqs_cis = self.freqs_cis.to(device)
        return self.freqs_cis[positions]

    def condition_embeddings(self, cond: torch.Tensor) -> torch.Tensor:
        """[B, cls_token_num, D]; class/caption dropout applies in train mode, as in the reference."""
        return self.cls_embedding(cond, train=self.training)[:, : self.config.cls_token_num]

    def null_condition(self, cond):
        """The CFG null condition shaped like `cond` (null class id, or the null caption at cond's length; a
        PromptCondition keeps its mask, as LlamaGen masks both CFG halves with the caption's mask)."""
        if isinstance(cond, PromptCondition):
            return PromptCondition(self.null_condition(cond.inputs), cond.mask)
        if self.config.model_type == "c2i":
            return torch.full_like(cond, self.config.num_classes)
        return self.cls_embedding.null_caption(cond.shape[0], cond.shape[1]).to(cond.dtype)

    def _run(self, h, positions, mask, use_cache, first: int = 0):
        """Logits of positions first.. only: the head (vocab-wide) skips the condition prefix it does not need."""
        freqs = self._freqs(positions, h.device)
        h = self.tok_dropout(h)
        for layer in self.layers:
            h = layer(h, freqs, positions, mask, use_cache)
        return self.output(self.norm(h[:, first:])).float()

    def teacher_forced_logits(self, cond, tokens: torch.Tensor,
                              cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Row t predicts tokens[:, t] from the condition and tokens[:, :t]. tokens: [B, T] → logits [B, T, V].

        cond: class ids [B], caption features [B, L, C], or a PromptCondition (features + mask). `cond_mask`
        [B, cls_token_num] (t2i padding; 1 = keep) hides padded caption positions from every query.
        Never touches a KV cache, so it is safe between generations.
        """
        cond, cond_mask = _unpack(cond, cond_mask)
        n_cls = self.config.cls_token_num
        h = torch.cat([self.condition_embeddings(cond), self.tok_embeddings(tokens[:, :-1])], dim=1)  # [B, n_cls+T-1, D]
        L = h.shape[1]
        mask = None if cond_mask is None else _prefix_mask(cond_mask, L, L, torch.arange(L, device=h.device))
        # A fresh tensor, not a view of a longer one: FSDP2 hooks the output of forward for backward.
        return self._run(h, torch.arange(L, device=h.device), mask, use_cache=False, first=n_cls - 1)  # [B, T, V]

    def forward(self, cond, tokens: torch.Tensor, cond_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The teacher-forced pass (`teacher_forced_logits`). Training calls the model through `forward` because
        data-parallel wrappers only hook it: DDP all-reduces gradients and FSDP2 gathers parameters around it."""
        return self.teacher_forced_logits(cond, tokens, cond_mask)

    # --- KV-cache generation hooks (driven by vapi.sampling) ---
    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None) -> None:
        p = self.tok_embeddings.weight
        cfg = self.config
        for layer in self.layers:
            layer.attention.kv_cache = KVCache(batch, max_len, cfg.kv_heads, cfg.head_dim, dtype or p.dtype, p.device)

    def clear_cache(self) -> None:
        self._generation_mask = None
        for layer in self.layers:
            layer.attention.kv_cache = None

    def prefill(self, cond, num_tokens: int | None = None) -> torch.Tensor:
        """Sets up the cache for the condition + `num_tokens` image tokens (default: all) and writes the condition;
        returns logits for the first image token [B, V]. The caption mask of a PromptCondition is kept for `decode`."""
        cond, cond_mask = _unpack(cond, None)
        self.setup_cache(cond.shape[0], self.config.cls_token_num + (num_tokens or self.num_image_tokens))
        self._generation_mask = cond_mask
        h = self.condition_embeddings(cond)
        L = h.shape[1]
        pos = torch.arange(L, device=h.device)
        mask = None if cond_mask is None else _prefix_mask(cond_mask, L, L, pos)
        return self._run(h, pos, mask, use_cache=True)[:, -1]

    def decode(self, token: torch.Tensor, index: int) -> torch.Tensor:
        """Feeds image token `index` ([B]) after a `prefill`; returns the logits of token index + 1 [B, V]."""
        pos = self.config.cls_token_num + index  # sequence position, condition included
        h = self.tok_embeddings(token[:, None])
        positions = torch.tensor([pos], device=h.device)
        cond_mask = getattr(self, "_generation_mask", None)
        mask = None if cond_mask is None else _prefix_mask(cond_mask, 1, pos + 1, positions)
        return self._run(h, positions, mask, use_cache=True)[:, -1]


def _unpack(cond, cond_mask):
    """(condition tensor, caption mask or None) from a tensor or a PromptCondition."""
    if isinstance(cond, PromptCondition):
        return cond.inputs, cond.mask
    return cond, cond_mask


def _prefix_mask(cond_mask: torch.Tensor, q_len: int, k_len: int, q_pos: torch.Tensor) -> torch.Tensor:
    """Causal mask [B, 1, q_len, k_len] that also hides padded condition keys (each query still sees itself)."""
    k_pos = torch.arange(k_len, device=cond_mask.device)
    causal = k_pos[None, :] <= q_pos[:, None]  # [q, k]
    keep = torch.ones(cond_mask.shape[0], k_len, dtype=torch.bool, device=cond_mask.device)
    n = min(cond_mask.shape[1], k_len)
    keep[:, :n] = cond_mask[:, :n].bool()
    mask = causal[None] & keep[:, None, :]  # [B, q, k]
    mask |= k_pos[None, None, :] == q_pos[None, :, None]
    return mask[:, None]
