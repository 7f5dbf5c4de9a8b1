"""What the trainer, sampling and evaluation need from a generator, its image tokenizer and its prompt encoder.

Every model vapi trains implements these Protocols: LlamaGen C2I/T2I (`llamagen_gpt.LlamaGenGPT` + `llamagen_vq.VQModel`
+ `text_encoder.T5CaptionEncoder`) and Janus-Pro (`janus.JanusPolicy` + `janus.JanusImageTokenizer` +
`janus.JanusPromptEncoder`). Nothing downstream branches on the model family.

A condition is either a tensor of class ids `[B]` (LlamaGen C2I) or a `PromptCondition` record (caption features or
prompt ids plus their padding mask). Both support the same four operations through the helpers below
(`repeat_condition`, `index_condition`, `cat_conditions`, `collate_conditions`; `.to(device)` is native), so a Rollout,
the BatchStream and the trainer carry either without knowing which.

Alignment contract of `teacher_forced_logits(cond, tokens)`: row t of the `[B, T, V]` result is the distribution of
image token t given the condition and `tokens[:, :t]`; `tokens[:, -1]` is never read. Greedy KV-cache generation must
equal the argmax of this pass on its own output (tests/models/test_janus.py, tests/models/test_llamagen_t2i.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Protocol, Union, runtime_checkable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PromptCondition:
    """A text condition: per-token inputs and their padding mask, padded on the left (LlamaGen and Janus both do).

    inputs: [B, L, C] float caption features (LlamaGen T2I: FLAN-T5, zero at padding) or [B, L] long prompt ids (Janus).
    mask:   [B, L] long, 1 = real token, 0 = padding; padding sits on the left so every row ends at position L-1.
    texts:  the B captions as strings, when known (text rewards such as a CLIP score read them); carried along.
    """

    inputs: torch.Tensor
    mask: torch.Tensor
    texts: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.inputs.shape[:2] != self.mask.shape:
            raise ValueError(f"PromptCondition: inputs {tuple(self.inputs.shape)} and mask {tuple(self.mask.shape)} "
                             "must agree on [B, L]")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def length(self) -> int:
        return self.inputs.shape[1]

    def repeat_interleave(self, repeats: int) -> PromptCondition:
        """Row b becomes rows b*G .. b*G+G-1 (the image-major rollout layout)."""
        texts = None if self.texts is None else tuple(t for t in self.texts for _ in range(repeats))
        return PromptCondition(self.inputs.repeat_interleave(repeats, dim=0),
                               self.mask.repeat_interleave(repeats, dim=0), texts)

    def index(self, index: slice | torch.Tensor) -> PromptCondition:
        texts = self.texts
        if texts is not None:
            texts = texts[index] if isinstance(index, slice) else \
                tuple(texts[i] for i in torch.arange(len(texts))[index].tolist())
        return PromptCondition(self.inputs[index], self.mask[index], texts)

    def to(self, device) -> PromptCondition:
        return PromptCondition(self.inputs.to(device), self.mask.to(device), self.texts)

    @staticmethod
    def cat(items: list[PromptCondition]) -> PromptCondition:
        """Concatenate along the batch, left-padding shorter rows (inputs 0, mask 0) to the longest."""
        L = max(c.length for c in items)

        def pad(t: torch.Tensor, n: int) -> torch.Tensor:
            widths = [0, 0] * (t.ndim - 2) + [n, 0]  # F.pad lists the last dim first; dim 1 is the sequence
            return F.pad(t, widths) if n else t

        texts = None if any(c.texts is None for c in items) else tuple(t for c in items for t in c.texts)
        return PromptCondition(torch.cat([pad(c.inputs, L - c.length) for c in items]),
                               torch.cat([pad(c.mask, L - c.length) for c in items]), texts)


Condition = Union[torch.Tensor, PromptCondition]  # class ids [B] | text record


def condition_size(cond: Condition) -> int:
    return len(cond) if isinstance(cond, PromptCondition) else cond.shape[0]


def repeat_condition(cond: Condition, repeats: int) -> Condition:
    return cond.repeat_interleave(repeats) if isinstance(cond, PromptCondition) else \
        cond.repeat_interleave(repeats, dim=0)


def index_condition(cond: Condition, index: slice | torch.Tensor) -> Condition:
    return cond.index(index) if isinstance(cond, PromptCondition) else cond[index]


def cat_conditions(items: list[Condition]) -> Condition:
    return PromptCondition.cat(items) if isinstance(items[0], PromptCondition) else torch.cat(items)


def collate_conditions(items: list) -> Condition:
    """Per-example conditions → one batch: ints → LongTensor [B]; records (batch 1 each) → one record."""
    if isinstance(items[0], PromptCondition):
        return PromptCondition.cat(items)
    if isinstance(items[0], torch.Tensor) and items[0].ndim > 0:
        return torch.cat(items)
    return torch.as_tensor(items, dtype=torch.long)


@runtime_checkable
class Generator(Protocol):
    """An autoregressive image-token policy (an nn.Module). Its trainable parameters are those with requires_grad:
    an implementation freezes everything VA-π must not move (tokenizer, understanding encoder) when it is built."""

    vocab_size: int  # V: image-token vocabulary (= the tokenizer's codebook)
    num_image_tokens: int  # T

    def teacher_forced_logits(self, cond: Condition, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] (a possibly corrupted context) → logits [B, T, V], row t predicting token t."""

    def null_condition(self, cond: Condition) -> Condition:
        """The model's own CFG null condition, batched like `cond`."""

    def prefill(self, cond: Condition, num_tokens: int) -> torch.Tensor:
        """Set up a KV cache for the condition plus `num_tokens` image tokens, write the condition; → logits [B, V]
        of image token 0."""

    def decode(self, token: torch.Tensor, index: int) -> torch.Tensor:
        """Feed image token `index` ([B]) into the cache; → logits [B, V] of token index + 1."""

    def clear_cache(self) -> None:
        """Drop the KV cache (teacher forcing never uses it)."""


@runtime_checkable
class ImageTokenizer(Protocol):
    """A frozen image tokenizer: images in [-1, 1] ↔ token ids, row-major over the latent grid."""

    vocab_size: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] → codes [B, T] long."""

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, T] → images [B, 3, H, W], nominally in [-1, 1]."""


@runtime_checkable
class PromptEncoder(Protocol):
    """Turns captions into the PromptCondition its generator reads (T5 features, or chat-formatted prompt ids)."""

    def __call__(self, prompts: list[str]) -> PromptCondition:
        """B prompts → a PromptCondition of batch B."""

    def prepare(self, prompts: list[str]) -> None:
        """Precompute whatever is expensive for these prompts (e.g. cache T5 features on disk); may be a no-op."""


# Attributes through which modules draw random numbers in train mode: LlamaGen's class/caption dropout and attention
# dropout, DropPath, transformers' attention dropout.
_RANDOM_RATES = ("dropout_prob", "attn_dropout_p", "attention_dropout", "drop_path_rate")


class PolicyBundle(NamedTuple):
    """The models of one generator, by the role names vapi uses everywhere (code, config help, docs):

    policy:         the autoregressive generator being post-trained (a Generator; LlamaGen's GPT, Janus's LM)
    tokenizer:      the frozen image tokenizer (an ImageTokenizer; LlamaGen's VQ model, Janus's VQ)
    prompt_encoder: captions → the condition the policy reads (a PromptEncoder); None for class-conditional policies
    image_size:     pixels the tokenizer encodes and decodes
    """

    policy: Generator
    tokenizer: ImageTokenizer
    prompt_encoder: Optional[PromptEncoder]
    image_size: int


def has_train_randomness(model: torch.nn.Module) -> bool:
    """True when `model.train()` makes its forward random (any dropout, DropPath or condition dropout rate > 0)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            return True
        if type(module).__name__ == "DropPath" and getattr(module, "p", 0) > 0:
            return True
        for name in _RANDOM_RATES:
            rate = getattr(module, name, 0)
            if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0:
                return True
    return False
