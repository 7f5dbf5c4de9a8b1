"""The embedded CPU demo: the whole VA-π story on procedural shapes, with nothing to download.

Stages (each cached under `cache_dir`, keyed by a hash of everything it depends on):
  data       procedural 10-class shapes (train / test splits, deterministic by seed)
  tokenizer  a small LlamaGen VQ                                   (vapi pretrain tokenizer)
  prior      a small LlamaGen GPT on its tokens                    (vapi pretrain prior)
  evalnet    a classifier that only MEASURES (own arch and seed)   (vapi pretrain features)
Then, not cached: the base prior is evaluated; VA-π, the equal-step CE control and VA-π without the prior term
(β = 0) post-train copies of it through the same `Trainer` as `vapi train`, for each seed; every model is evaluated
the same way (same labels, same sampling seed); `report.md` gathers the table, grids and curves.

The measuring network is never a loss: the reward is pixel MSE (+ optional LPIPS when its weights are cached), so
post-training cannot game the metric.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vapi.config import helpf, save_config, to_dict
from vapi.data.procedural import ProceduralShapes
from vapi.eval.features import ClassifierExtractor
from vapi.eval.generation import (balanced_labels, image_metrics, reencode_change_rate, reference_features,
                                  sample_images, teacher_forced_sample_error)
from vapi.models.checkpoint import load_pretrained
from vapi.objectives.rewards import RewardConfig
from vapi.pretrain.features import FeaturesPretrainConfig, pretrain_features
from vapi.pretrain.prior import PriorPretrainConfig, pretrain_prior
from vapi.pretrain.tokenizer import TokenizerPretrainConfig, pretrain_tokenizer
from vapi.sampling import SamplingConfig
from vapi.training.config import ObjectiveConfig, RunConfig
from vapi.training.optim import OptimConfig
from vapi.training.trainer import Trainer


@dataclass
class DemoData:
    train_images: int = helpf(30_000, "procedural training images")
    test_images: int = helpf(2_000, "held-out images: the FID reference and the clean validation CE")
    image_size: int = helpf(32, "image side")
    seed: int = helpf(0, "dataset seed (test split uses seed + 1)")


def demo_objective() -> ObjectiveConfig:
    """Chosen by measurement at this scale (see README, "The demo"), not the paper's defaults: ξ = 0 (the paper's C2I
    launcher too; at ξ = 0.5 this small prior is near chance on the corrupted context), β = 1 (β = 0.1 raised the
    clean CE and lowered class accuracy here), and the update in eval mode (dropout made 25% of the ratios clip)."""
    return ObjectiveConfig(context_noise=0.0, prior_weight=1.0, policy_mode="eval")


@dataclass
class PostTrain:
    steps: int = helpf(100, "rollout batches of every post-training run (VA-π and the CE control alike)")
    images_per_step: int = helpf(16, "real images per rollout batch")
    micro_batch_size: int = helpf(128, "sequences per forward/backward")
    objective: ObjectiveConfig = field(default_factory=demo_objective)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=3e-4, weight_decay=0.0))
    reward: RewardConfig = field(default_factory=lambda: RewardConfig(lpips=0.0))
    eval_steps: int = helpf(25, "clean validation CE and entropy every N steps")


VARIANTS = ("vapi", "ce", "vapi_no_prior")  # the post-training runs `run_config` knows how to build


@dataclass
class DemoConfig:
    out_dir: str = helpf("runs", "where runs/demo-<time>/ is written")
    cache_dir: str = helpf("runs/.cache/demo", "cached stages (data-independent of the run folder)")
    seeds: int = helpf(1, "post-training seeds (mean ± spread over seeds)")
    variants: list[str] = helpf(["vapi", "ce", "vapi_no_prior"], "post-training runs per seed")
    eval_samples: int = helpf(1000, "generated images per evaluation (class-balanced)")
    cfg_scale: float = helpf(2.0, "the guided evaluation's CFG scale (an unguided one always runs too)")
    eval_seed: int = helpf(1234, "sampling seed shared by every evaluation (same labels, same noise)")
    data: DemoData = field(default_factory=DemoData)
    tokenizer: TokenizerPretrainConfig = field(default_factory=lambda: TokenizerPretrainConfig(steps=450))
    prior: PriorPretrainConfig = field(default_factory=lambda: PriorPretrainConfig(steps=400, lr=2e-3, warmup_steps=30))
    evalnet: FeaturesPretrainConfig = field(default_factory=lambda: FeaturesPretrainConfig(arch="convnet", seed=1))
    post: PostTrain = field(default_factory=PostTrain)
    progress: bool = helpf(True, "progress bars")

    def __post_init__(self):
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f"variants: unknown {unknown[0]!r}; choose from {', '.join(VARIANTS)}" if unknown
                             else f"variants must name at least one of {', '.join(VARIANTS)}")
        for name in ("seeds", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.cfg_scale >= 0:
            raise ValueError(f"cfg_scale must be >= 0 (1 = off), got {self.cfg_scale}")


def stage_key(*parts) -> str:
    blob = json.dumps([p if isinstance(p, (str, int, float, dict, list)) else to_dict(p) for p in parts],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class Stages:
    """Wall time per stage, and cached stage folders (complete iff metrics.json exists)."""

    def __init__(self, cache_dir: Path):
        self.cache_dir, self.times, self.cached = Path(cache_dir), {}, {}

    def cached_stage(self, name: str, key: str, build) -> Path:
        folder = self.cache_dir / f"{name}-{key}"
        start = time.perf_counter()
        hit = (folder / "metrics.json").is_file()
        if not hit:
            print(f"[{name}] building (cache key {key})", flush=True)
            build(folder)
        else:
            print(f"[{name}] reusing {folder}", flush=True)
        self.times[name], self.cached[name] = time.perf_counter() - start, hit
        return folder

    def timed(self, name: str, fn):
        start = time.perf_counter()
        out = fn()
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start
        return out


def run_config(cfg: DemoConfig, variant: str, seed: int, out: Path, image_size: int) -> RunConfig:
    p = cfg.post
    rc = RunConfig(objective=copy.deepcopy(p.objective), optim=copy.deepcopy(p.optim), reward=copy.deepcopy(p.reward))
    if variant == "ce":
        rc.objective.name = "ce"
    if variant == "vapi_no_prior":
        rc.objective.prior_weight = 0.0
    rc.model.image_size = rc.data.image_size = image_size
    t = rc.train
    t.output_dir, t.max_steps, t.seed, t.device = str(out), p.steps, seed, "cpu"
    t.per_device_batch_size, t.micro_batch_size = p.images_per_step, p.micro_batch_size
    t.save_steps, t.save_total_limit, t.image_steps, t.tensorboard, t.progress = 0, 1, p.steps, True, cfg.progress
    if variant == "ce":  # same images per step; CE sees each once, VA-π sees each G times
        t.micro_batch_size = min(p.micro_batch_size, p.images_per_step)
    rc.grad_accum_steps  # validate
    return rc


@torch.no_grad()
def clean_validation(policy, tokens: torch.Tensor, labels: torch.Tensor) -> dict:
    """Clean teacher-forced CE (nats) and mean entropy of the policy on held-out tokens, in eval mode."""
    was = policy.training
    policy.eval()
    logits = policy.teacher_forced_logits(labels, tokens)  # [N, T, V]
    logp = logits.log_softmax(-1)
    ce = torch.nn.functional.nll_loss(logp.flatten(0, 1), tokens.flatten()).item()
    entropy = -(logp.exp() * logp).sum(-1).mean().item()
    policy.train(was)
    return {"val_ce": ce, "val_entropy": entropy}


class Evaluator:
    """Evaluates any generator the same way: same labels, same sampling seed, same measuring network."""

    def __init__(self, cfg: DemoConfig, vq, evalnet, test: ProceduralShapes):
        self.cfg, self.vq = cfg, vq
        self.extractor = ClassifierExtractor(evalnet)
        n = min(len(test), 1000)
        self.test_images = torch.stack([test[i][0] for i in range(len(test))])
        self.test_labels = torch.tensor([test[i][1] for i in range(len(test))])
        self.val_tokens = vq.encode(self.test_images[:n])
        self.val_labels = self.test_labels[:n]
        self.ref_feats = reference_features(self.extractor, self.test_images)
        self.labels = balanced_labels(cfg.eval_samples, 10)

    def __call__(self, policy, with_alignment: bool = False) -> dict:
        out = {}
        for name, scale in (("nocfg", 1.0), ("cfg", self.cfg.cfg_scale)):
            images, tokens = sample_images(policy, self.vq, self.labels, SamplingConfig(cfg_scale=scale),
                                           seed=self.cfg.eval_seed)
            for k, v in image_metrics(self.extractor, images, self.labels, self.ref_feats).items():
                out[f"{k}_{name}"] = v
            if with_alignment and name == "nocfg":
                out["reencode_change"] = reencode_change_rate(self.vq, tokens)
        out.update(clean_validation(policy, self.val_tokens, self.val_labels))
        if with_alignment:
            out.update(teacher_forced_sample_error(policy, self.vq, self.test_images[:500], self.test_labels[:500]))
            out["reencode_change_real"] = reencode_change_rate(self.vq, self.vq.encode(self.test_images[:500]))
        return out

    def grid(self, policy, per_class: int = 8) -> torch.Tensor:
        labels = torch.arange(10).repeat_interleave(per_class)
        images, _ = sample_images(policy, self.vq, labels, SamplingConfig(cfg_scale=1.0), seed=self.cfg.eval_seed)
        return images


def run_demo(cfg: DemoConfig) -> Path:
    from vapi.demo_report import write_report

    torch.use_deterministic_algorithms(True)  # bit-reproducible builds and runs on a given machine
    run_dir = Path(cfg.out_dir) / time.strftime("demo-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    stages = Stages(cfg.cache_dir)
    d = cfg.data
    train = stages.timed("data", lambda: ProceduralShapes(d.train_images, d.image_size, seed=d.seed))
    test = ProceduralShapes(d.test_images, d.image_size, seed=d.seed + 1)
    data_key = stage_key(d)
    tok_key = stage_key(data_key, cfg.tokenizer)
    tok_dir = stages.cached_stage("tokenizer", tok_key, lambda f: pretrain_tokenizer(cfg.tokenizer, train, f))
    prior_key = stage_key(tok_key, cfg.prior)
    prior_dir = stages.cached_stage("prior", prior_key, lambda f: pretrain_prior(cfg.prior, tok_dir, train, f))
    eval_dir = stages.cached_stage("evalnet", stage_key(data_key, cfg.evalnet),
                                   lambda f: pretrain_features(cfg.evalnet, train, f))
    vq = load_pretrained(tok_dir).eval().requires_grad_(False)
    evaluator = stages.timed("eval", lambda: Evaluator(cfg, vq, load_pretrained(eval_dir), test))
    base = load_pretrained(prior_dir)
    results = {"base": [stages.timed("eval", lambda: evaluator(base, with_alignment=True))]}
    grids = {"base": evaluator.grid(base)}
    curves = {}
    for seed in range(cfg.seeds):
        for variant in cfg.variants:
            out = run_dir / f"{variant}-seed{seed}"
            rc = run_config(cfg, variant, seed, out, d.image_size)
            policy = copy.deepcopy(base)
            trainer = Trainer(rc, policy, vq, train,
                              eval_fn=lambda p: clean_validation(p, evaluator.val_tokens, evaluator.val_labels),
                              eval_steps=cfg.post.eval_steps)
            print(f"[{variant} seed {seed}] {rc.train.max_steps} steps", flush=True)
            stages.timed(variant, trainer.train)
            results.setdefault(variant, []).append(stages.timed("eval", lambda: evaluator(policy, True)))
            curves.setdefault(variant, []).append(out / "metrics.jsonl")
            if seed == 0:
                grids[variant] = evaluator.grid(policy)
    (run_dir / "results.json").write_text(json.dumps({"results": results, "times": stages.times,
                                                      "cached": stages.cached}, indent=1))
    report = write_report(run_dir, cfg, results, grids, curves, stages, evaluator.test_images[:80])
    return report
