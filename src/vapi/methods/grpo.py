"""`grpo`: free-running GRPO with external rewards, as AR-GRPO (reference `Kwai-Klear/AR-GRPO`) runs it.

Per condition (a class id or a caption) of the batch: G whole images are generated with the KV cache and
classifier-free guidance (`grpo.cfg_scale`), decoded, and scored by the reward terms that need no real image
(classifier probability, CLIP score, PatchGAN realism, user functions); rewards are z-scored within each group of G;
the loss is the clipped surrogate on each sample's own tokens plus `grpo.beta`·k3 KL to the frozen initial policy.
The real images of the batch are not used: only their conditions.

Log-probs: `grpo.logprobs=conditional` (default, as AR-GRPO) takes the ratio and the KL of the policy's plain
conditional distribution, although the samples come from the CFG-guided one; `guided` takes them of the guided
distribution uncond + s·(cond − uncond), one extra null-condition forward per pass. All passes run in eval mode
(no dropout, no class dropout) so that the conditional log-probs are those of the condition, and the ratio is 1
before the first update (AR-GRPO: dropout 0).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from vapi.config import helpf
from vapi.methods.base import Grid, Method, MethodContext, Prepared, Rows, freeze
from vapi.models.protocols import Condition, cat_conditions, index_condition, repeat_condition
from vapi.objectives import group_advantages
from vapi.objectives.grpo import LOGPROBS, GRPOLoss, guided_logits
from vapi.objectives.rewards import score_tokens
from vapi.objectives.rollout import token_logprobs
from vapi.sampling import SamplingConfig, generate

LOGPROB_CHUNK = 16  # sequences per no-grad forward for the old log-probs: bounds the [n, T, V] logits held at once


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


@dataclass
class GrpoConfig:
    num_generations: int = helpf(8, "G: whole images generated per condition (AR-GRPO: 8)")
    cfg_scale: float = helpf(2.0, "classifier-free guidance scale of the generation (AR-GRPO C2I: 2.0)")
    temperature: float = helpf(1.0, "sampling temperature (also in the log-prob ratio)")
    top_k: int = helpf(0, "top-k filtering of the generation; 0 = off")
    top_p: float = helpf(1.0, "top-p filtering of the generation; 1.0 = off")
    epsilon: float = helpf(0.2, "PPO clip range of the ratio (TRL's default)")
    beta: float = helpf(0.1, "weight of the k3 KL to the frozen initial policy (AR-GRPO: 0.1); 0 = no reference")
    adv_clip: float = helpf(0.0, "advantages are clamped to ±adv_clip; 0 = off (TRL)")
    logprobs: str = helpf("conditional", "log-probs of the ratio and KL: conditional (AR-GRPO: the policy without "
                                         "guidance, though samples are guided) | guided (the sampling distribution)")

    def __post_init__(self):
        if self.num_generations < 2:
            raise ValueError(f"grpo.num_generations must be >= 2 for group advantages, got {self.num_generations}")
        if self.logprobs not in LOGPROBS:
            raise ValueError(f"grpo.logprobs must be one of {LOGPROBS}, got {self.logprobs!r}")
        if self.cfg_scale <= 0 or self.temperature <= 0 or self.epsilon <= 0 or self.beta < 0 or self.adv_clip < 0:
            raise ValueError("grpo: cfg_scale, temperature, epsilon must be > 0 and beta, adv_clip >= 0")


@dataclass
class GrpoWork(Rows):
    cond: Condition  # B*G rows, image-major (row b*G + k)
    tokens: torch.Tensor  # [B*G, T] generated
    old_logps: torch.Tensor  # [B*G, T]
    advantages: torch.Tensor  # [B*G]


class GrpoMethod(Method):
    def __init__(self, cfg: GrpoConfig, policy, tokenizer, reward, ctx: MethodContext):
        if not reward.items:
            raise ValueError("objective.name=grpo needs a reward: set reward.classifier, reward.clip, "
                             "reward.discriminator or reward.functions")
        if reward.needs_target:
            off = " ".join(f"reward.{n}=0" for n in reward.cfg.target_terms())
            raise ValueError(f"objective.name=grpo scores free-running samples, which have no real image: set {off}")
        self.cfg, self.model, self.tokenizer, self.reward, self.ctx = cfg, policy, freeze(tokenizer), reward, ctx
        self.loss_fn = GRPOLoss(cfg.epsilon, cfg.beta, cfg.temperature)
        self.ref_policy = freeze(copy.deepcopy(policy)) if cfg.beta > 0 else None
        self.sampling = SamplingConfig(cfg_scale=cfg.cfg_scale, temperature=cfg.temperature, top_k=cfg.top_k,
                                       top_p=cfg.top_p)

    def _logits(self, model, cond, tokens):
        """Teacher-forced logits [N, T, V] of the sequences: conditional, or CFG-guided (cond and null batched)."""
        with self.ctx.autocast():
            if self.cfg.logprobs == "conditional":
                return model(cond, tokens).float()
            both = model(cat_conditions([cond, self.model.null_condition(cond)]), torch.cat([tokens, tokens]))
        cond_logits, null_logits = both.float().chunk(2)
        return guided_logits(cond_logits, null_logits, self.cfg.cfg_scale)

    @torch.no_grad()
    def prepare(self, images, cond, keep_images: int = 0) -> Prepared:
        G = self.cfg.num_generations
        cond = repeat_condition(cond, G)  # B*G rows
        with self.ctx.autocast():
            tokens = generate(self.model, cond, self.sampling, generator=self.ctx.generator)  # [B*G, T]
        rewards, terms, decoded = score_tokens(self.reward, self.tokenizer, tokens, None, cond,
                                               keep_images=keep_images * G)  # [B*G]
        advantages = group_advantages(rewards, G, clip=self.cfg.adv_clip or None)  # [B*G]
        self.model.eval()
        old_logps = torch.cat([token_logprobs(self._logits(self.wrapped, index_condition(cond, part), tokens[part]),
                                              tokens[part], self.cfg.temperature)
                               for part in _chunks(tokens.shape[0], LOGPROB_CHUNK)])  # [B*G, T]
        metrics = {f"rewards/{k}/mean": v.mean().item() for k, v in terms.items()}
        metrics["frac_reward_zero_std"] = (rewards.view(-1, G).std(dim=1) == 0).float().mean().item()
        metrics["advantage_abs"] = advantages.abs().mean().item()
        grid = Grid(images[:keep_images], decoded, rewards[: keep_images * G]) if keep_images else None
        return Prepared(GrpoWork(cond, tokens, old_logps, advantages), metrics, rewards, grid)

    def loss(self, work: GrpoWork):
        self.model.eval()  # see the module docstring: conditional log-probs need the condition kept
        logits = self._logits(self.wrapped, work.cond, work.tokens)  # [mb, T, V]
        ref = None
        if self.ref_policy is not None:
            with torch.no_grad():
                ref = self._logits(self.ref_policy, work.cond, work.tokens)
        loss, stats = self.loss_fn(logits, work.tokens, work.old_logps, work.advantages, ref)
        return loss, {k: v for k, v in stats._asdict().items()}
