"""Janus-Pro as a vapi Generator / ImageTokenizer / PromptEncoder through transformers' JanusForConditionalGeneration.

    bundle = load_janus("deepseek-community/Janus-Pro-1B")   # a local folder, or a hub id already in the HF cache
    cond = bundle.prompt_encoder(["a photo of a cat"])        # chat template + <begin_of_image>, left-padded ids
    tokens = vapi.sampling.generate(bundle.policy, cond, SamplingConfig(cfg_scale=5.0))
    images = bundle.tokenizer.decode(tokens)                  # [B, 3, 384, 384] in [-1, 1]

Prompts are formatted as Janus does: the processor's chat template with one user turn and the generation prompt
("<|User|>: {prompt}\\n\\n<|Assistant|>:"), then the image-start token; the tokenizer adds BOS; batches are padded on
the left. The CFG null prompt is Janus's: every token except BOS and <begin_of_image> replaced by the pad token, same
attention mask (what `JanusForConditionalGeneration.generate` and the original `generate` do).

Teacher forcing (what VA-π trains) feeds [prompt embeddings ; generation embeddings of tokens[:, :-1]] through the
language model and reads the generation head at positions L-1 .. L+T-2, so row t (the hidden state *before* image
token t: the <begin_of_image> position for t = 0) predicts token t. The VA-π reference (`tf_logits_janus`) feeds all T
tokens and reads positions L .. L+T-1, so its row t already saw token t and is scored as predicting it: one position
late. tests/models/test_janus.py shows greedy generation equals the argmax of this pass and not of the late one.
Positions follow `generate` (left padding counted, as the HF cache does); RoPE is relative, so only exactness depends
on it.

Encoding departs from `JanusVQVAE.encode`, which takes the nearest codebook row without normalising: Janus's VQ
(LlamaGen's, `codebook_l2_norm=True`) l2-normalises the latent and the codebook before the argmin, and
`get_codebook_entry` (decoding) normalises the rows, so `encode` here does the same. Decoding is
`decode_image_tokens` (channels-last) permuted back to [B, 3, H, W].

Frozen at construction: the VQ model and the image-understanding path (SigLIP encoder + aligner), which image
generation never reads. Everything else trains: the language model (its embeddings included), the generation
embeddings, aligner and head. The reference trained all but the VQ; the understanding path gets no gradient there.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from vapi.models.protocols import PolicyBundle, PromptCondition


def _transformers():
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("Janus-Pro needs `transformers` >= 5: pip install 'vapi[hf]'") from err
    return transformers


class JanusPolicy(nn.Module):
    """The trainable Janus policy. State dict = the wrapped model's under `model.`; checkpoints are HF folders."""

    folder_key_prefix = "model."  # state-dict key = this + the key in the HF folder (`weights_io.read_saved_weights`)

    def __init__(self, model, *, bos_id: int, boi_id: int, pad_id: int, processor=None):
        super().__init__()
        self.model = model  # JanusForConditionalGeneration
        self.bos_id, self.boi_id, self.pad_id = bos_id, boi_id, pad_id
        self.processor = processor  # saved next to the weights so a checkpoint is a complete HF folder
        # A tuple, not a ModuleList: the modules stay registered once, under `model.`.
        self.frozen = (model.model.vqmodel, model.model.vision_model, model.model.aligner)
        for module in self.frozen:
            module.requires_grad_(False)
        self._cache, self._mask = None, None
        cfg = model.config
        self.vocab_size = cfg.vq_config.num_embeddings
        self.num_image_tokens = cfg.vq_config.num_patches ** 2
        if cfg.vision_config.num_image_tokens != self.num_image_tokens:
            raise ValueError(f"Janus config: vision_config.num_image_tokens={cfg.vision_config.num_image_tokens} but "
                             f"the VQ grid is {cfg.vq_config.num_patches}² = {self.num_image_tokens} tokens")

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:
            module.eval()  # frozen parts stay in eval mode
        return self

    # --- teacher forcing --------------------------------------------------------------------------------------
    def _lm(self):
        return self.model.model.language_model

    def teacher_forced_logits(self, cond: PromptCondition, tokens: torch.Tensor) -> torch.Tensor:
        """cond: prompt ids + mask [B, L]; tokens [B, T] → logits [B, T, V], row t predicting image token t."""
        L = cond.length
        text = self._lm().get_input_embeddings()(cond.inputs)  # [B, L, D]
        image = self.model.prepare_embeddings_for_image_generation(tokens[:, :-1])  # [B, T-1, D]
        mask = torch.cat([cond.mask, cond.mask.new_ones(tokens.shape[0], tokens.shape[1] - 1)], dim=1)  # [B, L+T-1]
        hidden = self._lm()(inputs_embeds=torch.cat([text, image.to(text.dtype)], dim=1), attention_mask=mask,
                            use_cache=False).last_hidden_state  # [B, L+T-1, D]
        return self.model.model.generation_head(hidden[:, L - 1:]).float()  # [B, T, V]

    forward = teacher_forced_logits  # so DDP/FSDP wrappers can call the policy

    def null_condition(self, cond: PromptCondition) -> PromptCondition:
        ids = cond.inputs
        keep = (ids == self.bos_id) | (ids == self.boi_id)
        return PromptCondition(torch.where(keep, ids, torch.full_like(ids, self.pad_id)), cond.mask)

    # --- KV-cache generation -----------------------------------------------------------------------------------
    def _step(self, embeds: torch.Tensor) -> torch.Tensor:
        out = self._lm()(inputs_embeds=embeds, attention_mask=self._mask, cache=self._cache, use_cache=True)
        return self.model.model.generation_head(out.last_hidden_state[:, -1]).float()  # [B, V]

    def prefill(self, cond: PromptCondition, num_tokens: int | None = None) -> torch.Tensor:
        self._cache = _transformers().DynamicCache(config=self.model.config.text_config)
        self._mask = cond.mask
        return self._step(self._lm().get_input_embeddings()(cond.inputs))

    def decode(self, token: torch.Tensor, index: int) -> torch.Tensor:
        self._mask = torch.cat([self._mask, self._mask.new_ones(token.shape[0], 1)], dim=1)
        embeds = self.model.prepare_embeddings_for_image_generation(token[:, None])  # [B, 1, D]
        return self._step(embeds.to(self._lm().get_input_embeddings().weight.dtype))

    def clear_cache(self) -> None:
        self._cache, self._mask = None, None

    # --- weights -----------------------------------------------------------------------------------------------
    @property
    def config(self) -> JanusArchitecture:
        return JanusArchitecture(self.model.config)

    def save_pretrained(self, directory, state_dict=None) -> Path:
        """An HF folder (`JanusForConditionalGeneration.from_pretrained` and `load_janus` read it). `state_dict`:
        this policy's full weights (keys `model.*`), e.g. gathered from a sharded model."""
        if state_dict is not None:
            state_dict = {k.removeprefix(self.folder_key_prefix): v for k, v in state_dict.items()}
        self.model.save_pretrained(directory, state_dict=state_dict)
        if self.processor is not None:
            self.processor.save_pretrained(directory)
        return Path(directory)


class JanusArchitecture:
    """A Janus config compared by what defines the weights (`to_dict` drops paths, dtypes, versions)."""

    def __init__(self, config):
        self.hf = config

    @classmethod
    def from_folder(cls, folder) -> JanusArchitecture:
        return cls(_transformers().AutoConfig.from_pretrained(folder))

    def to_dict(self) -> dict:
        return _architecture(self.hf.to_dict())


def _architecture(config: dict) -> dict:
    """A config dict without the entries that say where and in which dtype it was loaded."""
    skip = {"_name_or_path", "dtype", "torch_dtype", "transformers_version", "architectures"}
    return {k: _architecture(v) if isinstance(v, dict) else v for k, v in config.items() if k not in skip}


class JanusImageTokenizer(nn.Module):
    """Janus's frozen VQ model (the same module the policy holds) as an ImageTokenizer."""

    def __init__(self, model):
        super().__init__()
        self.vq = model.model.vqmodel
        self._decode_image_tokens = model.decode_image_tokens  # a bound method: not registered as a submodule
        cfg = model.config
        self.vocab_size = cfg.vq_config.num_embeddings
        self.grid = cfg.vq_config.num_patches
        self.downsample = 2 ** (len(cfg.vq_config.channel_multiplier) - 1)
        self.image_size = self.grid * self.downsample
        if self.image_size != cfg.vision_config.image_size:
            raise ValueError(f"Janus config: the VQ grid {self.grid} × downsample {self.downsample} = "
                             f"{self.image_size} px differs from vision_config.image_size "
                             f"{cfg.vision_config.image_size}")

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] in [-1, 1] → codes [B, grid²], l2-normalised nearest codebook rows, row-major."""
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise ValueError(f"Janus encodes {self.image_size}px images, got {tuple(images.shape[-2:])}")
        weight = self.vq.quant_conv.weight
        z = self.vq.quant_conv(self.vq.encoder(images.to(weight.dtype)))  # [B, C, g, g]
        z = F.normalize(z.permute(0, 2, 3, 1).flatten(1, 2).float(), dim=-1)  # [B, g², C]
        codebook = F.normalize(self.vq.quantize.embedding.weight.float(), dim=-1)  # [V, C]
        dist = z.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(-1) - 2 * z @ codebook.t()  # [B, g², V]
        return dist.argmin(-1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, grid=None) -> torch.Tensor:
        """codes [B, grid²] → images [B, 3, S, S], nominally in [-1, 1]."""
        return self._decode_image_tokens(codes).permute(0, 3, 1, 2).float()


class JanusPromptEncoder:
    """Captions → chat-formatted, image-start-terminated, left-padded prompt ids (a PromptCondition)."""

    def __init__(self, processor):
        self.processor = processor

    def format(self, prompt: str) -> str:
        messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def __call__(self, prompts: list[str]) -> PromptCondition:
        enc = self.processor(text=[self.format(p) for p in prompts], generation_mode="image", padding=True,
                             return_tensors="pt")  # appends <begin_of_image>; pads on the left
        return PromptCondition(enc["input_ids"].long(), enc["attention_mask"].long())  # [B, L]

    def prepare(self, prompts: list[str]) -> None:
        """Nothing to precompute: tokenizing is cheap."""


def load_janus(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32, device="cpu") -> PolicyBundle:
    """A transformers Janus folder (weights + processor) or a hub id in the HF cache → the three vapi roles."""
    tf = _transformers()
    path = os.fspath(path)
    try:
        model = tf.JanusForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device).eval()
    except OSError as err:  # offline and not cached (or no such folder): say where it would be and where it is from
        if os.path.isdir(path):
            raise
        from vapi.weights import hf_missing_message

        raise FileNotFoundError(hf_missing_message(path, "model.gpt for model.kind=janus")) from err
    try:
        processor = tf.AutoProcessor.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: no Janus processor (tokenizer + chat template) next to the weights: {err}") from None
    tok = processor.tokenizer
    boi_id = tok.convert_tokens_to_ids(processor.image_start_token)
    if tok.bos_token_id is None or tok.pad_token_id is None or boi_id is None or boi_id == tok.unk_token_id:
        raise ValueError(f"{path}: the tokenizer lacks a BOS, pad or {processor.image_start_token} token")
    policy = JanusPolicy(model, bos_id=tok.bos_token_id, boi_id=boi_id, pad_id=tok.pad_token_id, processor=processor)
    tokenizer = JanusImageTokenizer(model)
    return PolicyBundle(policy, tokenizer, JanusPromptEncoder(processor), tokenizer.image_size)
