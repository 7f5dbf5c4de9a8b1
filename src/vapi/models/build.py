"""Build a generator, its image tokenizer and (for text-to-image) its prompt encoder by model family.

    bundle = build_policy("llamagen", "t2i_XL_stage1_256.pt", "vq_ds16_t2i.pt", text=TextEncoderConfig("flan-t5-xl"))
    bundle = build_policy("janus", "deepseek-community/Janus-Pro-1B")

`kind` names the family: "llamagen" (official LlamaGen files or vapi folders; C2I or T2I, read from the weights) or
"janus" (a transformers Janus folder or hub id; `vq` unused: its VQ model is inside). A LlamaGen T2I GPT gets a
`T5CaptionEncoder` for the GPT's caption length (text.max_length 0 takes it; any other value must equal it); C2I
has no prompt encoder.
"""
from __future__ import annotations

import dataclasses

import torch

from vapi.models.protocols import PolicyBundle
from vapi.models.text_encoder import T5CaptionEncoder, TextEncoderConfig

MODEL_KINDS = ("llamagen", "janus")


def build_policy(kind: str, gpt: str, vq: str = "", *, text: TextEncoderConfig | None = None,
                 gpt_preset: str | None = None, vq_preset: str | None = None, image_size: int | None = None,
                 prefer_ema: bool = False, device: str | torch.device = "cpu",
                 text_device: str | torch.device | None = None, **gpt_overrides) -> PolicyBundle:
    if kind not in MODEL_KINDS:
        raise ValueError(f"model.kind must be one of {MODEL_KINDS}, got {kind!r}")
    if not gpt:
        raise ValueError("model.gpt is required: a LlamaGen checkpoint / vapi folder, or (kind=janus) a Janus folder")
    if kind == "janus":
        from vapi.models.janus import load_janus

        bundle = load_janus(gpt, device=device)
        if image_size and image_size != bundle.image_size:
            raise ValueError(f"this Janus model works at {bundle.image_size}px, not model.image_size={image_size}")
        return bundle

    from vapi.models.weights_io import build_generator_and_tokenizer

    if not vq:
        raise ValueError("model.vq is required for LlamaGen: the VQ tokenizer checkpoint or vapi folder")
    bundle = build_generator_and_tokenizer(gpt, vq, gpt_preset=gpt_preset, vq_preset=vq_preset,
                                           image_size=image_size, prefer_ema=prefer_ema, device=device,
                                           **gpt_overrides)
    encoder = None
    if bundle.policy.config.model_type == "t2i":
        text = text or TextEncoderConfig()
        if not text.max_length:
            text = dataclasses.replace(text, max_length=bundle.policy.config.cls_token_num)
        if text.max_length != bundle.policy.config.cls_token_num:
            raise ValueError(f"text_encoder.max_length={text.max_length} but the T2I GPT reads "
                             f"{bundle.policy.config.cls_token_num} caption tokens; set text_encoder.max_length="
                             f"{bundle.policy.config.cls_token_num}")
        encoder = T5CaptionEncoder(text, text_device or device)
        if encoder.dim != bundle.policy.config.caption_dim:
            raise ValueError(f"the text encoder's features have {encoder.dim} channels but the T2I GPT expects "
                             f"{bundle.policy.config.caption_dim} (LlamaGen: FLAN-T5-XL, 2048)")
    return bundle._replace(prompt_encoder=encoder)
