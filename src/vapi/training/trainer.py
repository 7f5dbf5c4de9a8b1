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

Under torchrun (`train.parallel` = ddp | fsdp, wrapped by `training.parallelize`) each rank draws its own images and
all G samples of an image stay on that rank, so group advantages are per rank, as in the reference; gradients are
averaged over ranks, so N ranks × B images make the same update as 1 rank × N·B. Reward statistics are gathered and
the other metrics averaged over ranks; rank 0 alone writes logs, grids and the config; every rank checkpoints.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from vapi.config import save_config, to_dict
from vapi.models.protocols import has_train_randomness, index_condition
from vapi.objectives import (MicroBatch, VaPiLoss, group_advantages, prior_ce, teacher_forced_rollout,
                             token_dropout_mask, token_entropy, weighted_prior_ce)
from vapi.objectives.rewards import Reward, score_tokens
from vapi.training.checkpoint import Checkpointer
from vapi.training.config import RunConfig, resolve_report_to
from vapi.training.distributed import DistInfo, all_gather_cat, reduce_metrics, resolve_device
from vapi.training.guards import NonFiniteGuard, check_geometry
from vapi.training.logging import MetricLogger
from vapi.training.optim import build_optimizer, build_scheduler
from vapi.training.parallelize import (apply_activation_checkpointing, full_value, grad_sync, parallelize,
                                      resolve_parallel)
from vapi.training.samples import SampleGrids
from vapi.training.state import BatchStream, TrainState


def uses_shared_update(layout: str, policy_mode: str, policy: torch.nn.Module) -> bool:
    """`objective.update_layout`: shared | per_sample | auto (shared whenever the update's numerator is dropout-free:
    policy_mode eval or twice, or a policy without train-mode randomness)."""
    if layout != "auto":
        return layout == "shared"
    return policy_mode in ("eval", "twice") or not has_train_randomness(policy)


class Trainer:
    def __init__(self, cfg: RunConfig, policy: torch.nn.Module, tokenizer: torch.nn.Module, dataset, *,
                 reward: Reward | None = None, resume: str | bool = False, dist: DistInfo | None = None,
                 eval_fn=None, eval_steps: int = 0):
        self.cfg = cfg
        # eval_fn(policy) -> {name: float}, run every eval_steps steps (and at step 0) and logged with the metrics.
        self.eval_fn, self.eval_steps = eval_fn, eval_steps
        t, o = cfg.train, cfg.objective
        # dist: this process's place in a torchrun job (`init_distributed`); None = a single process.
        self.dist = dist or DistInfo(device=resolve_device(t.device))
        self.device, self.rank = self.dist.device, self.dist.rank
        self.parallel = resolve_parallel(t.parallel, self.dist)
        if eval_fn is not None and self.parallel == "fsdp":
            raise ValueError("eval_fn needs the whole policy on every rank: use train.parallel=ddp with it")
        self.run_dir = Path(t.output_dir)
        if policy.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"the generator's vocabulary ({policy.vocab_size}) differs from the tokenizer's "
                             f"codebook ({tokenizer.vocab_size}): they must come from the same LlamaGen release")
        torch.manual_seed(t.seed * 7919 + self.rank)
        self.policy = policy.to(self.device)
        self.tokenizer = tokenizer.to(self.device).eval().requires_grad_(False)
        self.ref_policy = None
        if o.beta > 0:
            self.ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)
        self.reward = (reward or (Reward(cfg.reward, self.tokenizer) if o.name == "vapi" else None))
        if self.reward is not None:
            self.reward.to(self.device)
        self.shared_update = uses_shared_update(o.update_layout, o.policy_mode, policy)
        self.loss_fn = VaPiLoss(epsilon=o.epsilon, prior_weight=0.0 if o.policy_mode == "twice" else o.prior_weight,
                                kl_weight=o.beta, temperature=o.temperature, grad_accum_steps=cfg.grad_accum_steps)
        if t.gradient_checkpointing:
            apply_activation_checkpointing(self.policy)  # after the reference copy, which must not share the wrapper
        use_bf16 = t.precision == "bf16" or (t.precision == "auto" and self.device.type == "cuda")
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext
        # The policy as trained (DDP, FSDP2 or itself): logits come from calling it, so that gradients synchronise;
        # self.policy stays the underlying model (config, modes, checkpoints). Wrap before building the optimizer.
        self.wrapped_policy = parallelize(self.policy, self.parallel, self.dist, bf16=use_bf16)
        self.optimizer = build_optimizer(self.policy, cfg.optim)
        total_updates = t.max_steps * t.steps_per_generation * t.num_iterations
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, total_updates)
        # Rank 0 keeps the single-process stream; the other ranks draw independent context noise and samples.
        generator = torch.Generator(device=self.device).manual_seed(t.seed + 1_000_033 * self.rank)
        self.state = TrainState(sampling_generator=generator)
        self.stream = BatchStream(dataset, t.per_device_batch_size, t.seed, self.rank, self.dist.world_size,
                                  num_workers=t.num_workers)
        check_geometry(dataset, policy, tokenizer)
        self.guard = NonFiniteGuard(t.max_nonfinite_steps)
        self.checkpointer = Checkpointer(cfg, self.policy, self.optimizer, self.scheduler, self.stream, self.state,
                                         self.dist, self.guard)
        self.checkpointer.start(resume)  # folder rule, leftovers of a killed save, resume + config comparison
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
        report_to = resolve_report_to(t.report_to, t.tensorboard, t.wandb_project)
        self.logger = MetricLogger(self.run_dir, t.max_steps, self.state.step, self.rank, "tensorboard" in report_to,
                                   (t.wandb_project or "vapi") if "wandb" in report_to else "", to_dict(cfg),
                                   t.progress)
        self.samples = SampleGrids(t, self.tokenizer, dataset, self.logger, self.device, self.autocast,
                                   rank=self.rank, parallel=self.parallel)

    # --- one rollout batch -------------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        start = time.perf_counter()
        images, labels = next(self.stream)  # labels: class ids [B] or a PromptCondition of batch B
        images, labels = images.to(self.device), labels.to(self.device)  # [B, 3, H, W]
        with torch.no_grad():
            gt_tokens = self.tokenizer.encode(images)  # [B, T]
        if self.cfg.objective.name == "ce":
            metrics = self._ce_update(labels, gt_tokens)
        else:
            metrics = self._vapi_step(images, labels, gt_tokens)
        self.state.step += 1
        metrics["learning_rate"] = self.scheduler.get_last_lr()[0]
        n_seq = images.shape[0] * (self.cfg.objective.num_generations if self.cfg.objective.name == "vapi" else 1)
        metrics["step_time"] = time.perf_counter() - start
        metrics["seqs_per_sec"] = n_seq / metrics["step_time"]
        metrics = reduce_metrics(metrics, self.device)  # means over ranks (reward stats are already global)
        metrics["seqs_per_sec"] *= self.dist.world_size  # the whole job's throughput
        # TRL's num_tokens: image tokens generated so far by the whole job (from the step, so it survives resumes)
        metrics["num_tokens"] = float(self.state.step * n_seq * gt_tokens.shape[1] * self.dist.world_size)
        return metrics

    def _vapi_step(self, images, labels, gt_tokens) -> dict[str, float]:
        o, G = self.cfg.objective, self.cfg.objective.num_generations
        rollout, entropy = self._rollout(labels, gt_tokens)
        target = images.repeat_interleave(G, dim=0)  # [B*G, 3, H, W]
        keep = self.cfg.train.image_rows * G if self._images_due() else 0
        rewards, terms, decoded = score_tokens(self.reward, self.tokenizer, rollout.tokens, target, rollout.cond,
                                               keep_images=keep)  # [B*G]
        advantages = group_advantages(rewards, G, clip=o.adv_clip)  # [B*G]
        metrics = self._policy_update(rollout, advantages)
        everyone = all_gather_cat(rewards)  # [world * B*G]: reward statistics over all ranks
        metrics.update(reward=everyone.mean().item(), reward_std=everyone.std().item(), entropy=entropy,
                       advantage_abs=advantages.abs().mean().item())
        # TRL's names: rewards/<term>/mean is a reward (the negated cost of the term, before its weight)
        metrics.update({f"rewards/{k}/mean": -v.mean().item() for k, v in terms.items()})
        metrics["frac_reward_zero_std"] = (rewards.view(-1, G).std(dim=1) == 0).float().mean().item()
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
                logits = self.wrapped_policy(cond, context)  # [B, T, V] float32
            seen["entropy"] = token_entropy(logits, o.temperature).item()
            return logits

        rollout = teacher_forced_rollout(
            logits_fn, labels, gt_tokens, num_generations=o.num_generations, vocab_size=self.policy.vocab_size,
            context_noise=o.context_noise, temperature=o.temperature, top_k=o.top_k, top_p=o.top_p,
            generator=self.state.sampling_generator)
        return rollout, seen["entropy"]

    def _policy_update(self, rollout, advantages) -> dict[str, float]:
        """K optimizer steps over the rollout's B*G sequences, micro-batches of `micro_batch_size` sequences. In the
        shared layout a micro-batch costs one forward per image it touches, not one per sequence."""
        t = self.cfg.train
        mb, accum = t.micro_batch_size, self.cfg.grad_accum_steps
        sums, count, grad_norms = {}, 0, []
        for _ in range(t.num_iterations):
            for k in range(t.steps_per_generation):
                self.optimizer.zero_grad(set_to_none=True)
                for a in range(accum):
                    part = slice((k * accum + a) * mb, (k * accum + a + 1) * mb)
                    batch = rollout.micro_batch(part, self.shared_update)
                    with grad_sync(self.wrapped_policy, a == accum - 1):  # all-reduce once per optimizer step
                        stats = self._micro_step(batch, advantages[part])
                    for name, value in stats.items():
                        sums[name] = sums.get(name, 0.0) + value
                    count += 1
                grad_norms.append(self._optimizer_step())
        metrics = {name: value / count for name, value in sums.items()}
        metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
        return metrics

    def _micro_step(self, batch: MicroBatch, advantages: torch.Tensor) -> dict[str, float]:
        o = self.cfg.objective
        mask = None
        if o.token_dropout > 0:
            mask = token_dropout_mask(tuple(batch.tokens.shape), o.token_dropout, self.state.sampling_generator,
                                      self.device)  # [N, T]
        ref_logits = None
        if self.ref_policy is not None:
            with torch.no_grad(), self.autocast():
                ref_logits = self.ref_policy.teacher_forced_logits(batch.cond, batch.context)  # [b, T, V]
        self.policy.train(o.policy_mode != "eval" and o.policy_mode != "twice")
        with self.autocast():
            logits = self.wrapped_policy(batch.cond, batch.context)  # [b, T, V] float32
        loss, stats = self.loss_fn(logits, batch.tokens, batch.old_logps, advantages, batch.gt_tokens, mask,
                                   ref_logits, batch.row_image)
        if o.policy_mode == "twice" and o.prior_weight > 0:
            # The ratio was taken in eval mode; the prior term gets its own train-mode (dropout) pass, as the reference.
            self.policy.train(True)
            with self.autocast():
                train_logits = self.wrapped_policy(batch.cond, batch.context)  # [b, T, V]
            prior = weighted_prior_ce(train_logits, batch.gt_tokens, batch.row_image)
            loss = loss + o.prior_weight * prior / self.cfg.grad_accum_steps
        loss.backward()
        return {k: v.item() for k, v in stats._asdict().items()}

    def _ce_update(self, labels, gt_tokens) -> dict[str, float]:
        """The control: next-token CE on the clean context, same batch, micro-batching and optimizer."""
        self.policy.train(True)
        B, mb = gt_tokens.shape[0], self.cfg.train.micro_batch_size
        chunks = [slice(s, s + mb) for s in range(0, B, mb)]
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for i, part in enumerate(chunks):
            with grad_sync(self.wrapped_policy, i == len(chunks) - 1):
                with self.autocast():
                    logits = self.wrapped_policy(index_condition(labels, part), gt_tokens[part]).float()
                loss = prior_ce(logits, gt_tokens[part]) * (logits.shape[0] / B)
                loss.backward()
            total += loss.item()
        return {"loss": total, "prior_ce": total, "grad_norm": self._optimizer_step()}

    def _optimizer_step(self) -> float:
        max_norm = self.cfg.optim.max_grad_norm
        params = [p for p in self.policy.parameters() if p.requires_grad]
        norm = full_value(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))).item()
        if not math.isfinite(norm):  # a non-finite loss or reward ends here too: skip, never apply (see guards)
            self.optimizer.zero_grad(set_to_none=True)
            self.guard.skipped_update()
            return norm
        self.optimizer.step()
        self.scheduler.step()
        self.state.optimizer_steps += 1
        return norm

    def _images_due(self) -> bool:
        every = self.cfg.train.image_steps
        return self.rank == 0 and every > 0 and (self.state.step + 1) % every == 0

    # --- the loop and checkpoints ------------------------------------------------------------------------------
    def train(self) -> dict[str, float]:
        t = self.cfg.train
        metrics: dict[str, float] = {}
        try:
            if self.state.step == 0 and (found := self.samples.maybe_run(0, self.policy)):
                self.logger.log(0, found)
            while self.state.step < t.max_steps:
                if self.eval_fn and self.state.step == 0:
                    self.logger.log(0, self.eval_fn(self.policy))
                self.guard.begin_step()
                metrics = self.step()
                metrics.update(self.samples.maybe_run(self.state.step, self.policy))
                # Raises after max_nonfinite_steps skipped in a row: no save, the last good checkpoint stays.
                self.guard.end_step(metrics, self.state.step, self.checkpointer)
                if self.eval_fn and self.eval_steps and (self.state.step % self.eval_steps == 0
                                                         or self.state.step == t.max_steps):
                    metrics.update(self.eval_fn(self.policy))
                if self.state.step % t.logging_steps == 0 or self.state.step == t.max_steps:
                    self.logger.log(self.state.step, metrics)
                self.checkpointer.maybe_save(self.state.step, last=self.state.step >= t.max_steps)
            self.checkpointer.maybe_save(self.state.step, last=True)  # no-op when this step's checkpoint exists
        finally:
            self.logger.close()
        return metrics

    def save(self) -> Path:
        """Every rank takes part (full-weight gather, sharded writes); see `training.checkpoint`."""
        return self.checkpointer.save()
