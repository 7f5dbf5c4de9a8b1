"""LoRA adapters on a generator through `peft`, for policies too large to post-train in full (Janus-Pro-7B).

`apply_lora(policy, cfg)` injects rank-r adapters into the named Linear layers of the policy and freezes every other
parameter, so the optimizer, DDP/FSDP and checkpoints see only the adapters as trainable. The model stays the same
Python object with the same forward (no PeftModel wrapper), so everything that calls the policy is unchanged.
`merged_state_dict` folds the adapters back into plain weights (W + α/r · B A), with the original key names: what
vapi writes as the model folder of a checkpoint, so `vapi sample`, `vapi convert` and exports read a normal model.
The merged weights cannot give back W and B A, so a checkpoint's resumable state keeps the adapters
(`adapter_state_dict`, small) and a resume takes W from the run's pretrained weights again
(`training.checkpoint_weights`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from vapi.config import helpf

ADAPTER = "default"  # peft's adapter name
# Default targets: the projections inside the transformer blocks of LlamaGen (wqkv, wo, w1-3) and of a
# transformers Llama (Janus's language model); the vocabulary heads and the condition embedders stay frozen.
DEFAULT_TARGETS = ["wqkv", "wo", "w1", "w2", "w3", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                   "down_proj"]


@dataclass
class LoraConfig:
    rank: int = helpf(0, "LoRA rank r; 0 = off (full fine-tuning). Needs the `peft` package")
    alpha: float = helpf(16.0, "LoRA scale α (the update is α/r · B A)")
    dropout: float = helpf(0.0, "dropout on the adapters' input")
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS),
                                      metadata={"help": "names of the Linear layers that get adapters (those present)"})

    def __post_init__(self):
        if self.rank < 0 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.lora: rank must be >= 0, alpha > 0 and dropout in [0, 1); got rank={self.rank}, "
                             f"alpha={self.alpha}, dropout={self.dropout}")


def apply_lora(policy: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Inject adapters into `policy` in place and train only them. Returns the policy."""
    try:
        import peft
    except ImportError:
        raise ValueError("model.lora.rank > 0 needs the `peft` package: pip install 'vapi[lora]'") from None
    present = {name.rsplit(".", 1)[-1] for name, m in policy.named_modules() if isinstance(m, nn.Linear)}
    targets = sorted(set(cfg.target_modules) & present)
    if not targets:
        raise ValueError(f"model.lora.target_modules {cfg.target_modules} match no Linear layer of "
                         f"{type(policy).__name__}; its Linear layers are named {sorted(present)}")
    config = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets)
    peft.inject_adapter_in_model(config, policy, adapter_name=ADAPTER)
    for name, param in policy.named_parameters():
        param.requires_grad_(".lora_" in name)
    return policy


def is_lora(state_dict_or_model) -> bool:
    keys = state_dict_or_model.state_dict().keys() if isinstance(state_dict_or_model, nn.Module) \
        else state_dict_or_model.keys()
    return any(".lora_A." in k for k in keys)


def is_adapter_key(key: str) -> bool:
    """A LoRA adapter tensor (`x.lora_A.default.weight`, `x.lora_B.default.weight`) of a policy's state dict."""
    return ".lora_" in key


def adapter_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter tensors of a state dict: all that LoRA trains, and what the merged weights cannot give back."""
    return {k: v for k, v in state_dict.items() if is_adapter_key(k)}


def is_base_key(key: str) -> bool:
    """A frozen weight of an adapted layer (`x.base_layer.weight`): the pretrained one, never trained."""
    return ".base_layer." in key


def merged_key(key: str) -> str:
    """The key a policy's `x.base_layer.weight` gets in the merged state dict: `x.weight` (other keys unchanged)."""
    return key.replace(".base_layer.", ".")


def lora_scaling(policy: nn.Module) -> dict[str, float]:
    """{module name: α/r} of every adapted layer."""
    return {name: m.scaling[ADAPTER] for name, m in policy.named_modules() if hasattr(m, "lora_A")
            and ADAPTER in getattr(m, "scaling", {})}


def merged_state_dict(policy: nn.Module, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The policy's full state dict with every adapter folded in: `x.base_layer.weight` + α/r · B A → `x.weight`,
    adapter tensors dropped. `state_dict`: the policy's full (e.g. gathered) state dict; default its own.
    Without adapters the state dict is returned unchanged."""
    state_dict = policy.state_dict() if state_dict is None else state_dict
    if not is_lora(state_dict):
        return state_dict
    scaling = lora_scaling(policy)
    out = {}
    for key, value in state_dict.items():
        if is_adapter_key(key):
            continue
        if is_base_key(key):
            module = key.split(".base_layer.")[0]
            if key.endswith(".weight"):
                a = state_dict[f"{module}.lora_A.{ADAPTER}.weight"]  # [r, in]
                b = state_dict[f"{module}.lora_B.{ADAPTER}.weight"]  # [out, r]
                value = value + scaling[module] * (b.to(torch.float32) @ a.to(torch.float32)).to(value.dtype)
            key = merged_key(key)
        out[key] = value
    return out
