"""Post-training methods behind one interface (`methods.base.Method`), chosen once by `objective.name`.

    vapi       VA-π: teacher-forced rollouts, pixel rewards vs the real image, PPO-clip + β·prior CE  (generator)
    ce         the control: teacher-forced CE on the clean context                                   (generator)
    ste        straight-through Gumbel-softmax through the frozen decoder                            (generator)
    tokenizer  post-train the decoder on the frozen generator's teacher-forced samples                (decoder)
    grpo       free-running GRPO with external rewards and CFG, as AR-GRPO                            (generator)

Layering: models → objectives → methods → training; a method calls the models, the math lives in `objectives`.
"""
from __future__ import annotations

from vapi.methods.base import Grid, Method, MethodContext, Prepared
from vapi.methods.ce import CEMethod
from vapi.methods.grpo import GrpoMethod
from vapi.methods.ste import SteMethod
from vapi.methods.tokenizer import TokenizerMethod
from vapi.methods.vapi import VaPiMethod
from vapi.objectives.rewards import Reward

__all__ = ["Grid", "Method", "MethodContext", "Prepared", "build_method"]


# Methods that call the generator outside its forward (generation, grids), where FSDP2 would not gather its shards.
NO_FSDP = {"ste": "decodes sample grids with the generator outside its forward, which FSDP2 cannot gather",
           "grpo": "generates with the KV cache outside the generator's forward, which FSDP2 cannot gather"}


def build_method(cfg, policy, tokenizer, ctx: MethodContext, reward: Reward | None = None,
                 class_names: list[str] | None = None) -> Method:
    """The method `cfg.objective.name` names (cfg: a training.config.RunConfig), on models already on the device.

    `reward` replaces the one `cfg.reward` describes (tests, custom terms)."""
    name = cfg.objective.name
    if name == "ce":
        return CEMethod(policy, tokenizer, ctx, cfg.objective.policy_mode)
    reward = reward or Reward(cfg.reward, tokenizer, class_names)
    reward.to(ctx.device)
    builders = {
        "vapi": lambda: VaPiMethod(cfg.objective, policy, tokenizer, reward, ctx),
        "ste": lambda: SteMethod(cfg.ste, policy, tokenizer, reward, ctx),
        "tokenizer": lambda: TokenizerMethod(cfg.tokenizer, policy, tokenizer, reward, ctx),
        "grpo": lambda: GrpoMethod(cfg.grpo, policy, tokenizer, reward, ctx),
    }
    if name == "tokenizer" and (cfg.train.gradient_checkpointing or cfg.train.parallel == "fsdp"):
        raise ValueError("objective.name=tokenizer trains the VQ decoder: train.gradient_checkpointing and "
                         "train.parallel=fsdp apply to the generator's transformer blocks; use ddp and no checkpointing")
    why = NO_FSDP.get(name)
    if why and cfg.train.parallel == "fsdp":
        raise ValueError(f"objective.name={name} {why}: use train.parallel=ddp")
    if name not in builders:
        raise ValueError(f"objective.name must be one of vapi, ce, {', '.join(sorted(set(builders) - {'vapi'}))}; "
                         f"got {name!r}")
    return builders[name]()
