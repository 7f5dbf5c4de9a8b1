"""The trainer: one loop for every post-training method (`vapi.methods`), chosen by `objective.name`.

Per step (one batch of real images per rank):
  1. `method.prepare(images, cond)` turns the batch into what the method trains on (VA-π: teacher-forced rollouts,
     scored and group-normalised; grpo: free-running samples; ste / ce / tokenizer: the clean tokens or samples),
     without gradients;
  2. its rows are cut into micro-batches of `micro_batch_size`; `method.loss(rows)` gives each one's mean loss,
     accumulated over `grad_accum_steps` micro-batches into one AdamW step (more with steps_per_generation /
     num_iterations), clipped to `max_grad_norm`.
The trainer owns the loop, accumulation, optimizer, logging, checkpoints and resume identically for every method; the
method names what it trains (`method.model`: the generator, or the tokenizer for `tokenizer`).

Under torchrun (`train.parallel` = ddp | fsdp, wrapped by `training.parallelize`) each rank draws its own images and
all G samples of an image stay on that rank, so group advantages are per rank, as in the reference; gradients are
averaged over ranks, so N ranks × B images make the same update as 1 rank × N·B. Reward statistics are gathered and
the other metrics averaged over ranks; rank 0 alone writes logs, grids and the config; every rank checkpoints.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from vapi.config import save_config, to_dict
from vapi.methods import MethodContext, build_method
from vapi.objectives.rewards import Reward
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


class Trainer:
    def __init__(self, cfg: RunConfig, policy: torch.nn.Module, tokenizer: torch.nn.Module, dataset, *,
                 reward: Reward | None = None, resume: str | bool = False, dist: DistInfo | None = None,
                 eval_fn=None, eval_steps: int = 0):
        self.cfg = cfg
        # eval_fn(policy) -> {name: float}, run every eval_steps steps (and at step 0) and logged with the metrics.
        self.eval_fn, self.eval_steps = eval_fn, eval_steps
        t = cfg.train
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
        self.tokenizer = tokenizer.to(self.device)
        use_bf16 = t.precision == "bf16" or (t.precision == "auto" and self.device.type == "cuda")
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext
        # Rank 0 keeps the single-process stream; the other ranks draw independent context noise and samples.
        generator = torch.Generator(device=self.device).manual_seed(t.seed + 1_000_033 * self.rank)
        self.state = TrainState(sampling_generator=generator)
        self.method = build_method(cfg, self.policy, self.tokenizer, MethodContext(self.device, self.autocast,
                                   generator), reward, getattr(dataset, "class_names", None))
        self.model = self.method.model  # what the optimizer trains and checkpoints hold
        if t.gradient_checkpointing:
            apply_activation_checkpointing(self.model)  # after the method's reference copy, which must not share it
        # The module as trained (DDP, FSDP2 or itself): the method calls it, so that gradients synchronise;
        # self.model stays the underlying model (config, modes, checkpoints). Wrap before building the optimizer.
        self.wrapped = parallelize(self.method.forward_module, self.parallel, self.dist, bf16=use_bf16)
        self.method.bind(self.wrapped)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        total_updates = t.max_steps * t.steps_per_generation * t.num_iterations
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, total_updates)
        self.stream = BatchStream(dataset, t.per_device_batch_size, t.seed, self.rank, self.dist.world_size,
                                  num_workers=t.num_workers)
        check_geometry(dataset, policy, tokenizer)
        self.guard = NonFiniteGuard(t.max_nonfinite_steps)
        self.checkpointer = Checkpointer(cfg, self.model, self.optimizer, self.scheduler, self.stream, self.state,
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

    # --- one batch of real images ------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        start = time.perf_counter()
        images, cond = next(self.stream)  # cond: class ids [B] or a PromptCondition of batch B
        images, cond = images.to(self.device), cond.to(self.device)  # [B, 3, H, W]
        keep = self.cfg.train.image_rows if self._images_due() else 0
        prepared = self.method.prepare(images, cond, keep)
        metrics = self._update(prepared.work)
        if prepared.scores is not None:
            everyone = all_gather_cat(prepared.scores)  # [world * rows]: reward statistics over all ranks
            metrics.update(reward=everyone.mean().item(), reward_std=everyone.std().item())
        metrics.update(prepared.metrics)
        if prepared.grid is not None:
            self.logger.log_images(self.state.step + 1, *prepared.grid)
        self.state.step += 1
        metrics["learning_rate"] = self.scheduler.get_last_lr()[0]
        n_seq = len(prepared.work)
        metrics["step_time"] = time.perf_counter() - start
        metrics["seqs_per_sec"] = n_seq / metrics["step_time"]
        metrics = reduce_metrics(metrics, self.device)  # means over ranks (reward stats are already global)
        metrics["seqs_per_sec"] *= self.dist.world_size  # the whole job's throughput
        # TRL's num_tokens: image tokens trained on so far by the whole job (from the step, so it survives resumes)
        metrics["num_tokens"] = float(self.state.step * n_seq * self.policy.num_image_tokens * self.dist.world_size)
        return metrics

    def _update(self, work) -> dict[str, float]:
        """K optimizer steps over the work's rows, micro-batches of `micro_batch_size` rows, each step averaging
        `grad_accum_steps` micro-batch losses."""
        t = self.cfg.train
        mb, accum = self.cfg.micro_batch_size, self.cfg.grad_accum_steps
        sums, count, grad_norms = {}, 0, []
        for _ in range(t.num_iterations):
            for k in range(t.steps_per_generation):
                self.optimizer.zero_grad(set_to_none=True)
                for a in range(accum):
                    part = slice((k * accum + a) * mb, (k * accum + a + 1) * mb)
                    with grad_sync(self.wrapped, a == accum - 1):  # all-reduce once per optimizer step
                        loss, stats = self.method.loss(work.select(part))
                        (loss / accum).backward()
                    for name, value in stats.items():
                        sums[name] = sums.get(name, 0.0) + float(value)
                    count += 1
                grad_norms.append(self._optimizer_step())
        metrics = {name: value / count for name, value in sums.items()}
        metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
        return metrics

    def _optimizer_step(self) -> float:
        max_norm = self.cfg.optim.max_grad_norm
        params = [p for p in self.model.parameters() if p.requires_grad]
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
