"""Free-running sample grids (and optional generation metrics) during training: is generation getting better?

The teacher-forced grids of `MetricLogger.log_images` show samples drawn on the real image's context, which on a
real LlamaGen look almost like the ground truth whatever training does. These grids instead generate whole images
with the KV-cache sampler (`vapi.sampling.generate`) from the same fixed conditions and the same seed at every
check, so one cell can be compared across steps:

    row 1: unguided (cfg 1)          one column per fixed condition
    row 2: guided (train.sample_cfg_scale), only when the scale is != 1

Conditions are `train.sample_num` dataset items at fixed, evenly spaced indices (their class ids, or their captions
for text-to-image). Cells stay at the model's resolution; the grid goes to `<run>/samples/step-XXXXXX.png` and to
TensorBoard/W&B as `samples/free_running`.

Generation metrics (`train.gen_metrics_steps` > 0): FID (and IS / class accuracy when the feature network has a
classifier head) of `train.gen_metrics_samples` generated images against as many real images of the training set,
with the feature network the user names in `train.gen_metrics_features` ("inception": torch-fidelity's FID
Inception, whose weights must be in the torch hub cache, see `vapi env`; else a vapi classifier folder). Logged as
`gen/fid`, `gen/is`, `gen/accuracy`. Rank 0 only; not under FSDP (the policy is sharded there).

    grids = SampleGrids(cfg.train, tokenizer, dataset, logger, device, autocast)
    grids.maybe_run(step, policy)   # at step 0, every sample_steps steps and at max_steps
"""
from __future__ import annotations

import warnings
from contextlib import nullcontext

import torch

from vapi.models.protocols import collate_conditions, condition_size, index_condition
from vapi.sampling import SamplingConfig, sample_images


def fixed_indices(n: int, dataset_size: int) -> list[int]:
    """`n` evenly spaced dataset indices (all of them when the dataset is smaller)."""
    n = min(n, dataset_size)
    return [i * dataset_size // n for i in range(n)]


class SampleGrids:
    def __init__(self, train_cfg, tokenizer, dataset, logger, device: torch.device, autocast=nullcontext, *,
                 rank: int = 0, parallel: str = "none"):
        self.cfg, self.tokenizer, self.logger, self.device, self.autocast = train_cfg, tokenizer, logger, device, autocast
        self.dataset = dataset
        self.enabled = rank == 0 and (train_cfg.sample_steps > 0 or train_cfg.gen_metrics_steps > 0)
        if self.enabled and parallel == "fsdp":
            warnings.warn("train.sample_steps / gen_metrics_steps are skipped under FSDP: the policy is sharded",
                          stacklevel=2)
            self.enabled = False
        self._conds = None
        self._metrics = None  # (extractor, real features, labels or None, conditions) built at first use

    def _due(self, step: int, every: int) -> bool:
        return every > 0 and (step == 0 or step % every == 0 or step == self.cfg.max_steps)

    def maybe_run(self, step: int, policy) -> dict[str, float]:
        """Write a grid and/or compute generation metrics when `step` is due; returns the metrics (maybe empty)."""
        if not self.enabled:
            return {}
        out = {}
        if self._due(step, self.cfg.sample_steps):
            self.logger.log_sample_grid(step, self.grid(policy), nrow=self._num_columns())
        if self._due(step, self.cfg.gen_metrics_steps):
            out = self.metrics(policy)
        return out

    # --- grids ---------------------------------------------------------------------------------------------------
    def _conditions(self, indices: list[int]):
        return collate_conditions([self.dataset[i][1] for i in indices])  # class ids [n] or a PromptCondition

    def _num_columns(self) -> int:
        return min(self.cfg.sample_num, len(self.dataset))

    def _generate(self, policy, cond, cfg_scale: float, seed: int) -> torch.Tensor:
        """Images [n, 3, H, W] in [-1, 1] (float32, on the CPU) from one fixed seed."""
        sampling = SamplingConfig(cfg_scale=cfg_scale, top_k=self.cfg.sample_top_k)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return sample_images(policy, self.tokenizer, cond.to(self.device), sampling, generator=generator,
                             autocast=self.autocast).cpu()

    def grid(self, policy) -> torch.Tensor:
        """[rows * n, 3, H, W]: the unguided row, then the guided one (when sample_cfg_scale != 1)."""
        if self._conds is None:
            self._conds = self._conditions(fixed_indices(self.cfg.sample_num, len(self.dataset)))
        scales = [1.0] + ([self.cfg.sample_cfg_scale] if self.cfg.sample_cfg_scale != 1.0 else [])
        return torch.cat([self._generate(policy, self._conds, s, self.cfg.sample_seed) for s in scales])

    # --- generation metrics --------------------------------------------------------------------------------------
    def _build_metrics(self):
        from vapi.eval.features import ClassifierExtractor, InceptionV3Extractor
        from vapi.eval.generation import reference_features

        name = self.cfg.gen_metrics_features
        if name == "inception":
            # built lazily (at the first due step): its constructor draws from the global RNG, which must not shift
            # the training stream, or a resumed run would differ from an uninterrupted one
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                extractor = InceptionV3Extractor(device=self.device)
        else:
            from vapi.models.weights_io import load_pretrained
            from vapi.training.resolve import resolve_model_dir

            model = load_pretrained(resolve_model_dir(name))
            if not callable(getattr(model, "features", None)):
                raise ValueError(f"train.gen_metrics_features={name}: a {type(model).__name__}, not a classifier")
            extractor = ClassifierExtractor(model.to(self.device), device=self.device)
        # N fixed dataset items: their images are the reference, their conditions those of the generated images,
        # so both sides have the same class / caption distribution.
        indices = fixed_indices(self.cfg.gen_metrics_samples, len(self.dataset))
        real = torch.stack([self.dataset[i][0] for i in indices])  # [N, 3, H, W]
        cond = self._conditions(indices)
        labels = cond if isinstance(cond, torch.Tensor) and name != "inception" else None
        return extractor, reference_features(extractor, real, batch_size=64), labels, cond

    def metrics(self, policy) -> dict[str, float]:
        from vapi.eval.generation import image_metrics

        if self._metrics is None:
            self._metrics = self._build_metrics()
        extractor, ref_feats, labels, cond = self._metrics
        n = condition_size(cond)
        images = torch.cat([self._generate(policy, index_condition(cond, slice(s, s + 64)),
                                           self.cfg.sample_cfg_scale, self.cfg.sample_seed + 1 + s)
                            for s in range(0, n, 64)])
        found = image_metrics(extractor, images, labels if labels is not None else torch.zeros(len(images)),
                              ref_feats, batch_size=64)
        if labels is None:
            found.pop("accuracy", None)
        return {f"gen/{k}": float(v) for k, v in found.items()}
