"""The VA-π trainer: rollout → reward → advantages → micro-batched PPO-clip + prior-CE updates, one short step.

Per rollout batch (reference: `train_c2i_grpo.py`, one optimizer step per rollout batch):
  1. x* = VQ-encode(real images); the context is corrupted with probability ξ;
  2. one teacher-forced pass on the corrupted context (rollout mode: eval, as the reference); G sequences are
     sampled from its per-position distributions;
  3. every sample is decoded by the frozen tokenizer and scored against its real image;
  4. group-normalised, clipped advantages; the clipped surrogate on the same corrupted context plus β·CE against the
     clean tokens, accumulated over micro-batches, then one AdamW step (more with steps_per_generation /
     num_iterations).
`objective.name = ce` runs the control instead: plain teacher-forced CE on clean context with the same data, steps
and optimizer, so the two differ only in the objective.
"""
from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from vapi.config import save_config, to_dict
from vapi.objectives import VaPiLoss, group_advantages, prior_ce, teacher_forced_rollout, token_dropout_mask
from vapi.objectives.rewards import Reward, score_tokens
from vapi.training import checkpoint as ckpt
from vapi.training.config import RunConfig
from vapi.training.logging import MetricLogger
from vapi.training.optim import build_optimizer, build_scheduler
from vapi.training.state import BatchStream, TrainState


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA device is available; use train.device=cpu")
    return torch.device(name)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean per-position entropy (nats) of logits [N, T, V]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


class Trainer:
    def __init__(self, cfg: RunConfig, policy: torch.nn.Module, tokenizer: torch.nn.Module, dataset, *,
                 reward: Reward | None = None, resume: str | bool = False, rank: int = 0, world_size: int = 1):
        self.cfg = cfg
        t, o = cfg.train, cfg.objective
        self.device = resolve_device(t.device)
        self.run_dir = Path(t.output_dir)
        if policy.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"the generator's vocabulary ({policy.config.vocab_size}) differs from the tokenizer's "
                             f"codebook ({tokenizer.vocab_size}): they must come from the same LlamaGen release")
        torch.manual_seed(t.seed * 7919 + rank)
        self.policy = policy.to(self.device)
        self.tokenizer = tokenizer.to(self.device).eval().requires_grad_(False)
        self.ref_policy = None
        if o.beta > 0:
            self.ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)
        self.reward = (reward or (Reward(cfg.reward) if o.name == "vapi" else None))
        if self.reward is not None:
            self.reward.to(self.device)
        self.loss_fn = VaPiLoss(epsilon=o.epsilon, prior_weight=0.0 if o.policy_mode == "twice" else o.prior_weight,
                                kl_weight=o.beta, temperature=o.temperature, grad_accum_steps=cfg.grad_accum_steps)
        self.optimizer = build_optimizer(self.policy, cfg.optim)
        total_updates = t.max_steps * t.steps_per_generation * t.num_iterations
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, total_updates)
        self.state = TrainState(sampling_generator=torch.Generator(device=self.device).manual_seed(t.seed))
        self.stream = BatchStream(dataset, t.per_device_batch_size, t.seed, rank, world_size)
        self.rank = rank
        use_bf16 = t.precision == "bf16" or (t.precision == "auto" and self.device.type == "cuda")
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext
        if resume:
            self._resume(resume)
        if rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        self.logger = MetricLogger(self.run_dir, t.max_steps, self.state.step, rank, t.tensorboard,
                                   t.wandb_project, to_dict(cfg), t.progress)

    # --- one rollout batch -------------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        start = time.perf_counter()
        images, labels = next(self.stream)
        images, labels = images.to(self.device), labels.to(self.device)  # [B, 3, H, W], [B]
        with torch.no_grad():
            gt_tokens = self.tokenizer.encode(images)  # [B, T]
        if self.cfg.objective.name == "ce":
            metrics = self._ce_update(labels, gt_tokens)
        else:
            metrics = self._vapi_step(images, labels, gt_tokens)
        self.state.step += 1
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        n_seq = images.shape[0] * (self.cfg.objective.num_generations if self.cfg.objective.name == "vapi" else 1)
        metrics["seqs_per_sec"] = n_seq / (time.perf_counter() - start)
        return metrics

    def _vapi_step(self, images, labels, gt_tokens) -> dict[str, float]:
        o, G = self.cfg.objective, self.cfg.objective.num_generations
        rollout, entropy = self._rollout(labels, gt_tokens)
        target = images.repeat_interleave(G, dim=0)  # [B*G, 3, H, W]
        target_latent = None
        if self.cfg.reward.codebook_cosine:
            with torch.no_grad():
                target_latent = self.tokenizer.encode_latent(images).repeat_interleave(G, dim=0)
        keep = self.cfg.train.image_rows * G if self._images_due() else 0
        rewards, terms, decoded = score_tokens(self.reward, self.tokenizer, rollout.tokens, target, target_latent,
                                               keep_images=keep)  # [B*G]
        advantages = group_advantages(rewards, G, clip=o.adv_clip)  # [B*G]
        metrics = self._policy_update(rollout, advantages)
        metrics.update(reward=rewards.mean().item(), reward_std=rewards.std().item(), entropy=entropy,
                       advantage_abs=advantages.abs().mean().item())
        metrics.update({f"reward/{k}": v.mean().item() for k, v in terms.items()})
        if keep:
            rows = self.cfg.train.image_rows
            self.logger.log_images(self.state.step + 1, images[:rows], decoded, rewards[: rows * G])
        return metrics

    def _rollout(self, labels, gt_tokens):
        o = self.cfg.objective
        self.policy.train(o.rollout_mode == "train")
        seen = {}

        def logits_fn(cond, context):
            with self.autocast():
                logits = self.policy.teacher_forced_logits(cond, context).float()  # [B, T, V]
            seen["entropy"] = token_entropy(logits / o.temperature).item()
            return logits

        rollout = teacher_forced_rollout(
            logits_fn, labels, gt_tokens, num_generations=o.num_generations, vocab_size=self.policy.config.vocab_size,
            context_noise=o.context_noise, temperature=o.temperature, top_k=o.top_k, top_p=o.top_p,
            generator=self.state.sampling_generator)
        return rollout, seen["entropy"]

    def _policy_update(self, rollout, advantages) -> dict[str, float]:
        o, t = self.cfg.objective, self.cfg.train
        mb, accum = t.micro_batch_size, self.cfg.grad_accum_steps
        sums, count, grad_norms = {}, 0, []
        for _ in range(t.num_iterations):
            for k in range(t.steps_per_generation):
                self.optimizer.zero_grad(set_to_none=True)
                for a in range(accum):
                    part = slice((k * accum + a) * mb, (k * accum + a + 1) * mb)
                    batch = rollout.select(part)
                    stats = self._micro_step(batch, advantages[part])
                    for name, value in stats.items():
                        sums[name] = sums.get(name, 0.0) + value
                    count += 1
                grad_norms.append(self._optimizer_step())
        metrics = {name: value / count for name, value in sums.items()}
        metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
        return metrics

    def _micro_step(self, batch, advantages) -> dict[str, float]:
        o = self.cfg.objective
        mask = None
        if o.token_dropout > 0:
            mask = token_dropout_mask(tuple(batch.tokens.shape), o.token_dropout, self.state.sampling_generator,
                                      self.device)
        ref_logits = None
        if self.ref_policy is not None:
            with torch.no_grad(), self.autocast():
                ref_logits = self.ref_policy.teacher_forced_logits(batch.cond, batch.context).float()
        self.policy.train(o.policy_mode != "eval" and o.policy_mode != "twice")
        with self.autocast():
            logits = self.policy.teacher_forced_logits(batch.cond, batch.context).float()  # [mb, T, V]
        loss, stats = self.loss_fn(logits, batch.tokens, batch.old_logps, advantages, batch.gt_tokens, mask,
                                   ref_logits)
        if o.policy_mode == "twice" and o.prior_weight > 0:
            # The ratio was taken in eval mode; the prior term gets its own train-mode (dropout) pass, as the reference.
            self.policy.train(True)
            with self.autocast():
                train_logits = self.policy.teacher_forced_logits(batch.cond, batch.context).float()
            loss = loss + o.prior_weight * prior_ce(train_logits, batch.gt_tokens) / self.cfg.grad_accum_steps
        loss.backward()
        return {k: v.item() for k, v in stats._asdict().items()}

    def _ce_update(self, labels, gt_tokens) -> dict[str, float]:
        """The control: next-token CE on the clean context, same batch, micro-batching and optimizer."""
        self.policy.train(True)
        B, mb = gt_tokens.shape[0], self.cfg.train.micro_batch_size
        chunks = [slice(s, s + mb) for s in range(0, B, mb)]
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for part in chunks:
            with self.autocast():
                logits = self.policy.teacher_forced_logits(labels[part], gt_tokens[part]).float()
            loss = prior_ce(logits, gt_tokens[part]) * (logits.shape[0] / B)
            loss.backward()
            total += loss.item()
        return {"loss": total, "prior_ce": total, "grad_norm": self._optimizer_step()}

    def _optimizer_step(self) -> float:
        max_norm = self.cfg.optim.max_grad_norm
        params = [p for p in self.policy.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.state.optimizer_steps += 1
        return norm.item()

    def _images_due(self) -> bool:
        every = self.cfg.train.image_steps
        return self.rank == 0 and every > 0 and (self.state.step + 1) % every == 0

    # --- the loop and checkpoints ------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        t = self.cfg.train
        metrics: dict[str, float] = {}
        try:
            while self.state.step < t.max_steps:
                metrics = self.step()
                if self.state.step % t.logging_steps == 0 or self.state.step == t.max_steps:
                    self.logger.log(self.state.step, metrics)
                if t.save_steps and self.state.step % t.save_steps == 0 and self.state.step < t.max_steps:
                    self.save()
            self.save()
        finally:
            self.logger.close()
        return metrics

    def save(self) -> Path | None:
        if self.rank != 0:
            return None
        return ckpt.save_checkpoint(self.run_dir, self.state.step, self.policy, self._trainer_state(),
                                    keep=self.cfg.train.save_total_limit)

    def _trainer_state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "state": self.state.state_dict(), "data": self.stream.state_dict()}

    def _resume(self, resume: str | bool) -> None:
        path = ckpt.latest_checkpoint(self.run_dir) if resume is True or resume == "auto" else Path(resume)
        if path is None:
            return  # nothing to resume from yet: a fresh run
        trainer_state = ckpt.load_checkpoint(path, self.policy)
        self.optimizer.load_state_dict(trainer_state["optimizer"])
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        self.state.load_state_dict(trainer_state["state"])
        self.stream.load_state_dict(trainer_state["data"])
