"""The embedded CPU demo: the whole VA-π story on procedural shapes, with nothing to download.

Stages (shipped in assets/demo when their key matches, else cached under `cache_dir`, keyed by a hash of everything
they depend on; `rebuild=true` trains them from their config):
  data        procedural 10-class shapes (train / test splits, deterministic by seed)
  tokenizer   a small LlamaGen VQ                                        (vapi pretrain tokenizer)
  prior       a small LlamaGen GPT on its tokens, trained to its plateau (vapi pretrain prior)
  evalnet     a classifier that only MEASURES (own widths and seed)       (vapi pretrain features)
  perceptual  another classifier (other widths, seed and run): the backbone of the reward's LPIPS-style term
A user's own stages and data go through the same keys (`tokenizer_path`, `prior_path`, `evalnet_path`,
`perceptual_path`, `data.root`, `data.test_root`; rules in `vapi.demo.user`); the user's stages are used as given.
Then `vapi.demo.ablate` post-trains copies of the base prior through the same `Trainer` as `vapi train` (VA-π, its
matched control = VA-π with the policy term off, β = 0, ...) over seeds, evaluates every model the same way and
writes the report. The demo is the `main` study's core rows.

The measuring network is never a loss or a reward: the reward is pixel MSE + the LPIPS-style distance on the
`perceptual` network (or real LPIPS when its backbone is cached: post.reward.lpips=1 post.reward.perceptual=0).
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
from vapi.demo.user import check_stages, content_key, read_stage, user_data, user_paths
from vapi.eval.features import ClassifierExtractor, compute_features
from vapi.eval.npz import content_hash
from vapi.eval.generation import (balanced_labels, feature_metrics, reconstruction_error, reencode_change_rate,
                                  reference_features, teacher_forced_eval, teacher_forced_sample_error)
from vapi.eval.metrics import precision_recall
from vapi.models.weights_io import load_pretrained
from vapi.objectives.rewards import Reward, RewardConfig
from vapi.pretrain.features import FeaturesPretrainConfig, pretrain_features
from vapi.pretrain.prior import PriorPretrainConfig, pretrain_prior
from vapi.pretrain.tokenizer import TokenizerPretrainConfig, pretrain_tokenizer
from vapi.sampling import SamplingConfig, sample_images
from vapi.training.config import ObjectiveConfig, RunConfig
from vapi.training.optim import OptimConfig
from vapi.training.trainer import Trainer


USER_DATA = ("root", "test_root")  # DemoData's folder keys: left out of the procedural data's identity


@dataclass
class DemoData:
    train_images: int = helpf(30_000, "procedural training images")
    test_images: int = helpf(2_000, "held-out images: the FID reference and the clean validation CE")
    image_size: int = helpf(32, "image side (the user's images are center-cropped and resized to it)")
    seed: int = helpf(0, "dataset seed (test split uses seed + 1); the user's images are shuffled with it (held-out: "
                         "seed, training: seed + 1)")
    root: str = helpf("", "the user's training images, root/<class_name>/<image>; '' = the procedural shapes")
    test_root: str = helpf("", "the user's held-out images (same class folders as data.root): the FID reference "
                               "and the clean validation CE")

    def __post_init__(self):
        if bool(self.root) != bool(self.test_root):
            raise ValueError("root and test_root go together: give both (training class folders and a held-out set "
                             "of the same classes), or neither for the procedural shapes")


def demo_objective() -> ObjectiveConfig:
    """Chosen by measurement at this scale (README, "The demo"; `vapi ablate prior`, `vapi ablate sweep`): ξ = 0 (the
    paper's C2I value; with the CE prior ξ ≥ 0.25 made FID worse; with the KL prior no ξ was below the matched
    control on seeds 3-8, though ξ 0.25 stayed below the base), the update in eval mode (dropout made 25% of the
    ratios clip), and the prior term as a KL to the initial policy at β = 1 (`objective.beta`) instead of the
    paper's CE to the clean tokens: in the prior study on the 1800-step base (shipped until 4387647) it was the
    only row below the base on seeds 0-2, and on the 7200-step base the paper's CE prior made FID worse than the
    base at β 0.1 (+0.121) and at β 1 (+0.009). On the shipped 28800-step base the prior and noise studies and the
    pre-registered search (docs/search-28800.md) found no setting below the matched control: none changed."""
    return ObjectiveConfig(context_noise=0.0, prior_weight=0.0, beta=1.0, policy_mode="eval")


@dataclass
class PostTrain:
    steps: int = helpf(24, "rollout batches of every post-training run (VA-π and its controls alike)")
    images_per_step: int = helpf(32, "real images per rollout batch (× G decodes and rewards per step: the cost)")
    micro_batch_size: int = helpf(1024, "sequences per forward/backward (shared layout: one forward per image)")
    objective: ObjectiveConfig = field(default_factory=demo_objective)
    # lr 5e-5: of the settings `vapi ablate sweep` tried on the 7200-step base (lr 1e-4, 64 images/step, β 2, 48
    # steps) the only one below the base and the matched control on seeds 0-2, and on 45 pre-registered fresh seeds
    # (README, "The search on the previous base"); on the shipped base see docs/search-28800.md
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(learning_rate=5e-5, weight_decay=0.0))
    reward: RewardConfig = field(default_factory=lambda: RewardConfig(mse=1.0, lpips=0.0, perceptual=1.0,
                                                                      perceptual_path="demo", chunk_size=256))
    eval_steps: int = helpf(0, "clean validation CE and entropy every N post-training steps, for the curves (0 = "
                               "only in the final evaluation; each costs about 5 s at one thread)")


VARIANTS = ("base", "control", "ce", "vapi", "vapi_no_prior")  # the rows of `vapi ablate main` (ablate.STUDIES)


@dataclass
class DemoConfig:
    out_dir: str = helpf("runs", "where runs/demo-<time>/ is written")
    cache_dir: str = helpf("runs/.cache/demo", "cached stages (data-independent of the run folder)")
    shipped_dir: str = helpf("auto", "pretrained stages shipped with vapi (assets/demo); used when their cache key "
                                     "matches the config; auto = the repository's assets/demo; '' = never")
    rebuild: bool = helpf(False, "train every stage from its config instead of using shipped or cached stages")
    seeds: int = helpf(3, "post-training seeds per row (intervals are over seeds)")
    first_seed: int = helpf(0, "the first post-training seed (seeds first_seed … first_seed + seeds - 1): confirm a "
                               "setting chosen on seeds 0-2 on seeds it was not chosen with")
    variants: list[str] = helpf(["base", "control", "ce", "vapi", "vapi_no_prior"],
                                "rows of the main study the demo runs (see `vapi ablate main --list`); `ce` (a CE "
                                "fine-tune in the same mode) is the base's convergence check")
    eval_samples: int = helpf(1000, "generated images per evaluation (class-balanced)")
    eval_seeds: int = helpf(3, "sampling seeds the base is evaluated with: the evaluation noise")
    cfg_scale: float = helpf(2.0, "the guided evaluation's CFG scale (an unguided one always runs too)")
    eval_seed: int = helpf(1234, "sampling seed of every post-trained model's evaluation (same labels, same noise)")
    reuse_runs: bool = helpf(False, "reuse a post-training run already made with the same resolved settings, stages, "
                                    "seed and evaluation (cached in cache_dir/runs): rows that several studies share "
                                    "train once (make reproduce)")
    jobs: int = helpf(0, "post-training runs at once, each in its own process (0 = one per CPU core, at most one "
                         "per run); torch threads are shared out among them")
    threads: int = helpf(0, "torch CPU threads (0 = torch's default); on a shared machine 1 avoids thrashing")
    tokenizer_path: str = helpf("", "the user's tokenizer: a LlamaGen VQ model folder (vapi convert, vapi pretrain "
                                    "tokenizer), used as given; '' = the demo's")
    prior_path: str = helpf("", "the user's prior: a class-conditional LlamaGen GPT model folder on tokenizer_path's "
                                "codes (needs tokenizer_path); '' = the demo's, built on the tokenizer")
    evalnet_path: str = helpf("", "the user's measuring network: a vapi pretrain features folder with the data's "
                                  "classes; '' = the demo's")
    perceptual_path: str = helpf("", "the user's perceptual reward network: a vapi pretrain features folder; '' = "
                                     "the demo's")
    data: DemoData = field(default_factory=DemoData)
    tokenizer: TokenizerPretrainConfig = field(default_factory=lambda: TokenizerPretrainConfig(steps=28800))
    prior: PriorPretrainConfig = field(default_factory=lambda: PriorPretrainConfig(steps=2000))
    evalnet: FeaturesPretrainConfig = field(default_factory=lambda: FeaturesPretrainConfig(arch="convnet", seed=1))
    perceptual: FeaturesPretrainConfig = field(default_factory=lambda: FeaturesPretrainConfig(
        arch="convnet", widths=[32, 64, 128], seed=3))
    post: PostTrain = field(default_factory=PostTrain)
    progress: bool = helpf(True, "progress bars")

    def __post_init__(self):
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f"variants: unknown {unknown[0]!r}; choose from {', '.join(VARIANTS)}" if unknown
                             else f"variants must name at least one of {', '.join(VARIANTS)}")
        if self.jobs < 0:
            raise ValueError(f"jobs must be >= 0 (0 = one per CPU core), got {self.jobs}")
        if self.first_seed < 0:
            raise ValueError(f"first_seed must be >= 0, got {self.first_seed}")
        for name in ("seeds", "eval_samples", "eval_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.cfg_scale >= 0:
            raise ValueError(f"cfg_scale must be >= 0 (1 = off), got {self.cfg_scale}")
        if self.prior_path and not self.tokenizer_path:
            raise ValueError("prior_path needs tokenizer_path: the prior predicts its tokenizer's codes; give "
                             "tokenizer_path=DIR, the tokenizer it was trained on")


def stage_key(*parts) -> str:
    blob = json.dumps([p if isinstance(p, (str, int, float, dict, list)) else to_dict(p) for p in parts],
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def repo_assets() -> Path:
    return Path(__file__).resolve().parents[3] / "assets" / "demo"


class Stages:
    """Wall time per stage, and stage folders: shipped (assets/demo, read-only), else cached, else built."""

    def __init__(self, cache_dir: Path, shipped_dir: str = "", rebuild: bool = False):
        self.cache_dir, self.times, self.cached = Path(cache_dir), {}, {}
        self.user: dict[str, dict] = {}  # stage → {"folder", "key"}: the user's stages
        self.shipped = None if rebuild or not shipped_dir else (repo_assets() if shipped_dir == "auto"
                                                                 else Path(shipped_dir))
        self.rebuild = rebuild

    def cached_stage(self, name: str, key: str, build) -> Path:
        start = time.perf_counter()
        shipped = self.shipped / f"{name}-{key}" if self.shipped else None
        folder = self.cache_dir / f"{name}-{key}"
        if shipped is not None and (shipped / "metrics.json").is_file():
            print(f"[{name}] shipped {shipped}", flush=True)
            folder, hit = shipped, "shipped"
        elif (folder / "metrics.json").is_file() and not self.rebuild:
            print(f"[{name}] reusing {folder}", flush=True)
            hit = "cached"
        else:
            print(f"[{name}] building (cache key {key})", flush=True)
            build(folder)
            hit = ""
        self.times[name], self.cached[name] = time.perf_counter() - start, hit
        return folder

    def user_stage(self, name: str, folder: Path, key: str) -> Path:
        """The user's stage folder, used as given: never built, written or cached."""
        print(f"[{name}] the user's {folder} (key {key})", flush=True)
        self.times[name], self.cached[name], self.user[name] = 0.0, "user", {"folder": str(folder), "key": key}
        return folder

    def timed(self, name: str, fn):
        start = time.perf_counter()
        out = fn()
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start
        return out


def data_identity(d: DemoData) -> dict:
    """What the data is, in the stage and run keys: the procedural settings (without the empty folder keys), or the
    image size, the seed and a hash of each of the user's folders (reads every file once)."""
    if d.root:
        return {"image_size": d.image_size, "seed": d.seed, "root": content_hash(Path(d.root).expanduser())[:12],
                "test_root": content_hash(Path(d.test_root).expanduser())[:12],  # their images
                "order": 1}  # 1: both folders shuffled with the seed (user_data)
    return {k: v for k, v in to_dict(d).items() if k not in USER_DATA}


def stage_keys(cfg: "DemoConfig", data_id: dict | None = None) -> dict[str, str]:
    """Each stage's key. The user's: a hash of its files. A built one: a hash of its config and of everything it
    depends on (`data_id`, the data's identity, computed when not given; the prior: its tokenizer, and the data
    when the tokenizer is the user's)."""
    data_key = stage_key(data_identity(cfg.data) if data_id is None else data_id)
    user = {name: content_key(folder) for name, folder in user_paths(cfg).items()}
    tok_key = user.get("tokenizer") or stage_key(data_key, cfg.tokenizer)
    prior_key = stage_key(tok_key, data_key, cfg.prior) if "tokenizer" in user else stage_key(tok_key, cfg.prior)
    return {"tokenizer": tok_key, "prior": user.get("prior") or prior_key,
            "evalnet": user.get("evalnet") or stage_key(data_key, cfg.evalnet),
            "perceptual": user.get("perceptual") or stage_key(data_key, cfg.perceptual)}


def build_stages(cfg: "DemoConfig", stages: Stages, train, keys: dict[str, str]) -> dict[str, Path]:
    """Every stage's folder: the user's as given, else shipped, cached or built from `train`."""
    user = user_paths(cfg)

    def stage(name, build):
        if name in user:
            return stages.user_stage(name, user[name], keys[name])
        return stages.cached_stage(name, keys[name], build)

    # the longest stage saves its state every 500 steps (about 3 minutes): an interrupted build resumes
    dirs = {"tokenizer": stage("tokenizer", lambda f: pretrain_tokenizer(cfg.tokenizer, train, f,
                                                                          checkpoint_every=500))}
    dirs["prior"] = stage("prior", lambda f: pretrain_prior(cfg.prior, dirs["tokenizer"], train, f))
    for name in ("evalnet", "perceptual"):
        sub = getattr(cfg, name)
        dirs[name] = stage(name, lambda f, sub=sub: pretrain_features(sub, train, f))
    for name, folder in dirs.items():
        if name in user or folder.parent != Path(cfg.cache_dir):
            continue
        save_config(getattr(cfg, name), folder / "config.yaml")
    return dirs


def datasets(d: DemoData) -> tuple:
    """(training, held-out) datasets: the user's class folders, else the procedural shapes."""
    if d.root:
        return user_data(d)
    return (ProceduralShapes(d.train_images, d.image_size, seed=d.seed),
            ProceduralShapes(d.test_images, d.image_size, seed=d.seed + 1))


def apply_overrides(obj, overrides: dict) -> None:
    """Set dotted keys (`objective.prior_weight`) on a config object; unknown keys raise."""
    for key, value in overrides.items():
        *path, last = key.split(".")
        target = obj
        for part in path:
            target = getattr(target, part)
        if not hasattr(target, last):
            raise ValueError(f"unknown option {key!r}")
        setattr(target, last, copy.deepcopy(value))


def run_config(cfg: "DemoConfig", overrides: dict, seed: int, out: Path, image_size: int,
               perceptual_dir: Path | None = None) -> RunConfig:
    """The post-training RunConfig of one row: the demo's `post` settings with the row's overrides. Every row shares
    update mode, batch, lr, schedule, steps and data order (`seed`) unless it overrides them."""
    p = cfg.post
    rc = RunConfig(objective=copy.deepcopy(p.objective), optim=copy.deepcopy(p.optim), reward=copy.deepcopy(p.reward))
    rc.model.image_size = rc.data.image_size = image_size
    t = rc.train
    t.output_dir, t.max_steps, t.seed, t.device = str(out), p.steps, seed, "cpu"
    t.per_device_batch_size, t.micro_batch_size = p.images_per_step, p.micro_batch_size
    t.save_steps, t.save_total_limit, t.image_steps, t.progress = 0, 1, p.steps, cfg.progress
    t.sample_steps, t.report_to = 0, []
    apply_overrides(rc, overrides)
    for name in ("perceptual_path", "classifier_path", "features_path"):  # "demo": the demo's perceptual network
        if getattr(rc.reward, name) == "demo":
            setattr(rc.reward, name, str(perceptual_dir))
    if rc.objective.name == "ce":  # CE sees each image once, VA-π sees each G times
        t.micro_batch_size = min(t.micro_batch_size, t.per_device_batch_size)
    rc.train.micro_batch_size = min(rc.train.micro_batch_size, rc.sequences_per_step)
    rc.grad_accum_steps  # validate
    return rc


GRID_CLASSES = 16  # rows of a sample grid at most


def dataset_labels(dataset) -> list[int]:
    """Every item's label: the dataset's `labels` (listed without decoding images), else read item by item."""
    labels = getattr(dataset, "labels", None)
    return list(labels) if labels is not None else [int(dataset[i][1]) for i in range(len(dataset))]


def floor_indices(labels: list[int], want: torch.Tensor) -> list[int]:
    """For each label in `want` (the evaluation's `balanced_labels`), the next image of that class in dataset order:
    the tokenizer's floor images have the generated samples' class mix. A class with too few images is short."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    queues = {y: iter(indices) for y, indices in by_class.items()}
    picked = (next(queues.get(y, iter(())), None) for y in want.tolist())
    return [i for i in picked if i is not None]


class Evaluator:
    """Evaluates any generator the same way: same labels, same sampling seed, same measuring network."""

    def __init__(self, cfg: DemoConfig, vq, evalnet, test, reward=None, train=None):
        """`test`: the held-out dataset (its `num_classes` are the labels'); `reward`: the demo's reward (not a
        row's), scored on held-out teacher-forced samples: VA-π's objective; `train`: the training set, whose first
        images of each class, as many per class as the evaluation samples, give the tokenizer's floor
        (`tokenizer_alignment`)."""
        self.cfg, self.vq, self.reward, self.num_classes = cfg, vq, reward, test.num_classes
        self.extractor = ClassifierExtractor(evalnet)
        n = min(len(test), 1000)
        self.test_images = torch.stack([test[i][0] for i in range(len(test))])
        self.test_labels = torch.tensor([test[i][1] for i in range(len(test))])
        self.val_tokens = vq.encode(self.test_images[:n])
        self.val_labels = self.test_labels[:n]
        self.ref_feats = reference_features(self.extractor, self.test_images)
        self.labels = balanced_labels(cfg.eval_samples, self.num_classes)
        self.floor_images = None if train is None else torch.stack(
            [train[i][0] for i in floor_indices(dataset_labels(train), self.labels)])  # [n, 3, H, W]
        self.real_fid = None if train is None else self.fid(self.floor_images)
        self._alignment: tuple | None = None  # (tokenizer, its numbers)

    def __call__(self, policy, with_alignment: bool = False, seed: int | None = None, vq=None) -> dict:
        """`vq`: a post-trained tokenizer to decode with (its encoder is the original's); default the demo's."""
        if vq is not None:
            saved, self.vq = self.vq, vq
            try:
                return self(policy, with_alignment, seed)
            finally:
                self.vq = saved
        out = {}
        for name, scale in (("nocfg", 1.0), ("cfg", self.cfg.cfg_scale)):
            images, tokens = self.sample(policy, self.vq, self.labels, scale,
                                         self.cfg.eval_seed if seed is None else seed)
            feats, logits = compute_features(self.extractor, images, batch_size=500, progress=False)
            for k, v in feature_metrics(feats, logits, self.labels, self.ref_feats).items():
                out[f"{k}_{name}"] = v
            out[f"precision_{name}"], out[f"recall_{name}"] = precision_recall(self.ref_feats, feats)
            if with_alignment and name == "nocfg":
                out["reencode_change"] = reencode_change_rate(self.vq, tokens, images=images)
        out.update(self.validation(policy))
        if with_alignment:
            score = None if self.reward is None else (lambda im, tg, c, tok: self.reward(im, tg, c, tok)[0])
            out.update(teacher_forced_sample_error(policy, self.vq, self.test_images[:500], self.test_labels[:500],
                                                   score=score, reconstruction=False))
            out.update(self.tokenizer_alignment(score))
        return out

    def tokenizer_alignment(self, score) -> dict:
        """What does not depend on the generator, once per tokenizer: its reconstruction error (and reward) on the
        held-out images, the re-encode change of their tokens and, with training images, the tokenizer's floor:
        `recon_fid`, the FID of their reconstructions (what a generator that reproduced the training images' tokens
        exactly would score), beside `real_fid`, the FID of the training images themselves (the sampling floor)."""
        if self._alignment is None or self._alignment[0] is not self.vq:
            x, y = self.test_images[:500], self.test_labels[:500]
            numbers = {**reconstruction_error(self.vq, x, score=score, labels=y),
                       "reencode_change_real": reencode_change_rate(self.vq, self.vq.encode(x))}
            if self.floor_images is not None:
                numbers.update(recon_fid=self.fid(self.reconstruct(self.floor_images)), real_fid=self.real_fid,
                               floor_images=len(self.floor_images))
            self._alignment = (self.vq, numbers)
        return dict(self._alignment[1])

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """decode(encode(images)) with the current tokenizer, clamped to the image range [-1, 1]."""
        return torch.cat([self.vq.decode(self.vq.encode(images[i: i + batch_size])).clamp(-1, 1)
                          for i in range(0, len(images), batch_size)])

    def fid(self, images: torch.Tensor) -> float:
        """FID of `images` [N, 3, H, W] against the held-out reference."""
        feats, _ = compute_features(self.extractor, images, batch_size=500, progress=False)
        return feature_metrics(feats, None, self.labels, self.ref_feats)["fid"]

    def validation(self, policy) -> dict:
        """Clean teacher-forced CE, token accuracy and entropy on the held-out images' tokens."""
        return teacher_forced_eval(policy, self.val_tokens, self.val_labels)

    @staticmethod
    def sample(policy, vq, labels: torch.Tensor, cfg_scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One image per label, seeded: (images [N, 3, H, W] in [-1, 1], tokens [N, T])."""
        return sample_images(policy, vq, labels, SamplingConfig(cfg_scale=cfg_scale), batch_size=500,
                             generator=torch.Generator().manual_seed(seed), return_tokens=True)

    def grid(self, policy, per_class: int = 8, vq=None) -> torch.Tensor:
        """`per_class` samples of each of the first GRID_CLASSES classes, a row each."""
        labels = torch.arange(min(self.num_classes, GRID_CLASSES)).repeat_interleave(per_class)
        return self.sample(policy, vq or self.vq, labels, 1.0, self.cfg.eval_seed)[0]


@dataclass
class Setup:
    """Everything a study needs, built once: data, stages, the frozen tokenizer, the evaluator and the base prior."""

    cfg: DemoConfig
    stages: Stages
    train: torch.utils.data.Dataset
    dirs: dict
    vq: torch.nn.Module
    evaluator: Evaluator
    base: torch.nn.Module
    keys: dict  # stage → key (stage_keys)
    data_id: dict  # the data's identity (data_identity)


def prepare(cfg: DemoConfig, known: tuple[dict, dict] | None = None) -> Setup:
    """Data, stages (built when missing), tokenizer, evaluator and base prior. `known`: (data_id, keys) that the
    caller already computed for this cfg (a job process gets its parent's: a user's folders are hashed once)."""
    torch.use_deterministic_algorithms(True)  # bit-reproducible builds and runs on a given machine
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    configs = {name: read_stage(name, folder) for name, folder in user_paths(cfg).items()}
    stages = Stages(cfg.cache_dir, cfg.shipped_dir, cfg.rebuild)
    train, test = stages.timed("data", lambda: datasets(cfg.data))
    check_stages(cfg, configs, train.num_classes)
    if known is None:
        data_id = data_identity(cfg.data)
        known = (data_id, stage_keys(cfg, data_id))
    data_id, keys = known
    dirs = build_stages(cfg, stages, train, keys)
    vq = load_pretrained(dirs["tokenizer"]).eval().requires_grad_(False)
    reward_cfg = copy.deepcopy(cfg.post.reward)
    if reward_cfg.perceptual_path == "demo":
        reward_cfg.perceptual_path = str(dirs["perceptual"])
    evaluator = stages.timed("eval", lambda: Evaluator(cfg, vq, load_pretrained(dirs["evalnet"]), test,
                                                       Reward(reward_cfg).eval(), train))
    return Setup(cfg, stages, train, dirs, vq, evaluator, load_pretrained(dirs["prior"]), keys, data_id)


def post_train(setup: Setup, overrides: dict, seed: int, out: Path
               ) -> tuple[torch.nn.Module, torch.nn.Module, float]:
    """Post-train copies of the base prior and the tokenizer with the row's overrides (the `tokenizer` method trains
    the tokenizer's decoder, every other method the prior); returns (policy, tokenizer, seconds)."""
    cfg = setup.cfg
    rc = run_config(cfg, overrides, seed, out, cfg.data.image_size, setup.dirs["perceptual"])
    policy, vq = copy.deepcopy(setup.base), copy.deepcopy(setup.vq)
    every = cfg.post.eval_steps
    trainer = Trainer(rc, policy, vq, setup.train, eval_fn=setup.evaluator.validation if every else None,
                      eval_steps=every)
    start = time.perf_counter()
    trainer.train()
    return policy, vq.eval().requires_grad_(False), time.perf_counter() - start
