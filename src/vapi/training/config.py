"""The run configuration of `vapi train`: it composes the component configs; defaults are the paper's values.

Names follow TRL's GRPOConfig where the concept is the same (num_generations, epsilon, temperature, top_k, top_p,
max_grad_norm, learning_rate, num_iterations, steps_per_generation, beta for a KL penalty). The paper's β, which
weighs the prior (cross-entropy) term of the ELBO, is `objective.prior_weight`: it is not TRL's KL `beta`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from vapi.config import helpf
from vapi.data.build import DataConfig
from vapi.methods.grpo import GrpoConfig
from vapi.methods.ste import SteConfig
from vapi.methods.tokenizer import TokenizerMethodConfig
from vapi.models.build import MODEL_KINDS
from vapi.models.lora import LoraConfig
from vapi.models.text_encoder import TextEncoderConfig
from vapi.objectives.rewards import RewardConfig
from vapi.training.optim import OptimConfig
from vapi.training.parallelize import PARALLEL

OBJECTIVES = ("vapi", "ce", "ste", "tokenizer", "grpo")
MODES = ("train", "eval")
POLICY_MODES = ("train", "eval", "twice")
UPDATE_LAYOUTS = ("auto", "shared", "per_sample")
PRECISIONS = ("auto", "fp32", "bf16")
ZERO_MEANS = {"save_steps": "only at the end", "image_steps": "off", "save_total_limit": "keep all",
              "sample_steps": "off", "sample_top_k": "off", "gen_metrics_steps": "off",
              "num_workers": "decode in the training process"}


@dataclass
class ModelConfig:
    kind: str = helpf("llamagen", "model family: llamagen (C2I or T2I, from the weights) | janus (transformers)")
    gpt: str = helpf("", "generator: LlamaGen .pt/.pth/.safetensors or vapi folder; kind=janus: a transformers "
                         "Janus folder or hub id in the HF cache")
    vq: str = helpf("", "VQ tokenizer checkpoint: LlamaGen .pt or a vapi model folder (unused by kind=janus)")
    gpt_model: str = helpf("", "GPT preset (GPT-B ... GPT-7B); default: inferred from the tensor shapes")
    image_size: int = helpf(0, "image size the generator was trained at; 0 = from a vapi folder's config or the "
                               "official file's name (c2i_XXL_384.pt); required when neither says")
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model.kind must be one of {MODEL_KINDS}, got {self.kind!r}")


@dataclass
class ObjectiveConfig:
    name: str = helpf("vapi", "the method: vapi (this section) | ce (the control: teacher-forced CE on the clean "
                              "context, updated in policy_mode as vapi) | ste (straight-through through the decoder; "
                              "section ste) | tokenizer (post-train the decoder; section tokenizer) | grpo "
                              "(free-running GRPO, AR-GRPO; section grpo)")
    num_generations: int = helpf(8, "G: samples per image, drawn from one teacher-forced pass")
    context_noise: float = helpf(0.5, "ξ: probability that each context token is replaced by a uniform random one")
    temperature: float = helpf(1.0, "sampling temperature of the rollout (also used in the log-prob ratio)")
    top_k: int = helpf(0, "top-k filtering of the rollout sampling; 0 = off (log-probs stay unfiltered)")
    top_p: float = helpf(1.0, "top-p filtering of the rollout sampling; 1.0 = off")
    epsilon: float = helpf(0.2, "PPO clip range of the ratio")
    adv_clip: float = helpf(5.0, "advantages are clamped to ±adv_clip")
    policy_weight: float = helpf(1.0, "weight of the PPO-clip surrogate, the reward term; 0 = off: the matched "
                                      "control (the same update, mode, batch and data with the reward left out)")
    prior_weight: float = helpf(0.1, "the paper's β: weight of the prior CE term (clean targets, corrupted context)")
    beta: float = helpf(0.0, "TRL's KL coefficient to the frozen initial policy; 0 = off (no reference model)")
    token_dropout: float = helpf(0.0, "fraction of tokens left out of the surrogate at random; 0 = off")
    rollout_mode: str = helpf("eval", "model mode of the sampling pass: eval (reference) | train")
    policy_mode: str = helpf("train", "mode of the update pass: train (dropout) | eval | twice (ratio in eval, CE in train)")
    update_layout: str = helpf("auto", "shared: one forward per image, its G samples gather from it (G× less compute "
                                       "and activation memory) | per_sample: one forward per sequence (the "
                                       "reference) | auto: shared whenever the update's numerator is dropout-free "
                                       "(policy_mode eval/twice or a dropout-free model). Shared in train mode "
                                       "draws one dropout mask per image instead of one per sample: a different "
                                       "estimator")

    def __post_init__(self):
        if self.name not in OBJECTIVES:
            raise ValueError(f"objective.name must be one of {OBJECTIVES}, got {self.name!r}")
        if self.policy_weight < 0:
            raise ValueError(f"policy_weight must be >= 0 (0 = off), got {self.policy_weight}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 to normalise advantages in a group, "
                             f"got {self.num_generations}")
        if not 0.0 <= self.context_noise <= 1.0:
            raise ValueError(f"context_noise must be in [0, 1], got {self.context_noise}")
        if not 0.0 <= self.token_dropout < 1.0:
            raise ValueError(f"token_dropout must be in [0, 1), got {self.token_dropout}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon (the PPO clip range) must be > 0, got {self.epsilon}")
        if not self.adv_clip > 0:
            raise ValueError(f"adv_clip must be > 0 (advantages are clamped to ±adv_clip), got {self.adv_clip}")
        for name in ("prior_weight", "beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.rollout_mode not in MODES:
            raise ValueError(f"rollout_mode must be one of {MODES}, got {self.rollout_mode!r}")
        if self.update_layout not in UPDATE_LAYOUTS:
            raise ValueError(f"update_layout must be one of {UPDATE_LAYOUTS}, got {self.update_layout!r}")
        if self.policy_mode not in POLICY_MODES:
            raise ValueError(f"policy_mode must be one of {POLICY_MODES}, got {self.policy_mode!r}")


@dataclass
class TrainConfig:
    output_dir: str = helpf("runs/vapi", "run folder: config, metrics, TensorBoard, images, checkpoints")
    max_steps: int = helpf(100, "rollout batches (each: sample, score, then update)")
    per_device_batch_size: int = helpf(16, "REAL IMAGES per rollout batch per device; each gets G samples, so the "
                                           "sequences (TRL's completions) per device are this × G")
    micro_batch_size: int = helpf(8, "sequences per forward/backward pass")
    steps_per_generation: int = helpf(1, "optimizer steps per rollout batch (the reference: 1)")
    num_iterations: int = helpf(1, "PPO epochs over each rollout batch")
    seed: int = helpf(0, "seed of data order, context noise, sampling and dropout")
    device: str = helpf("auto", "auto | cpu | cuda | cuda:N")
    precision: str = helpf("auto", "auto (bf16 autocast on GPU, fp32 on CPU) | fp32 | bf16")
    parallel: str = helpf("auto", "under torchrun: ddp | fsdp (FSDP2, sharded; bf16 params + fp32 reduction with "
                                  "bf16) | none; auto = ddp when world_size > 1")
    logging_steps: int = helpf(1, "log scalars every N steps")
    image_steps: int = helpf(25, "write a teacher-forced grid (real image | its G samples) every N steps; 0 = off")
    image_rows: int = helpf(4, "images per teacher-forced grid")
    sample_steps: int = helpf(50, "free-running sample grid (fixed conditions and seed) every N steps, at step 0 "
                                  "and at the end; 0 = off")
    sample_num: int = helpf(8, "conditions per free-running grid (evenly spaced dataset items: classes or captions)")
    sample_cfg_scale: float = helpf(4.0, "guidance of the grid's second row and of gen metrics (1 = unguided only)")
    sample_top_k: int = helpf(0, "top-k of grid and gen-metric sampling; 0 = off")
    sample_seed: int = helpf(0, "seed of the free-running grids (the same at every step)")
    gen_metrics_steps: int = helpf(0, "generation metrics (gen/fid, gen/is, gen/accuracy) every N steps; 0 = off")
    gen_metrics_samples: int = helpf(256, "generated images per generation-metric check (as many real ones)")
    gen_metrics_features: str = helpf("inception", "feature network of gen metrics: inception (weights in the "
                                                   "torch hub cache, see `vapi env`) | a vapi classifier folder")
    num_workers: int = helpf(0, "DataLoader worker processes decoding images (0 = in the training process); "
                                "resume stays exact")
    save_steps: int = helpf(50, "checkpoint every N steps (and at the end); 0 = only at the end")
    save_total_limit: int = helpf(2, "keep the last N checkpoints (the newest is never deleted); 0 = keep all")
    overwrite: bool = helpf(False, "start a new run in an output_dir that holds one, deleting its checkpoints, "
                                   "metrics, TensorBoard and grids (without it, that is refused)")
    max_nonfinite_steps: int = helpf(5, "stop after this many steps in a row skipped for a non-finite loss, "
                                        "reward or gradient norm")
    report_to: list[str] = helpf(["tensorboard"], "logging backends besides metrics.jsonl: tensorboard, wandb, "
                                                  "all or none (comma list)")
    tensorboard: bool | None = helpf(None, "old alias: true adds tensorboard to report_to, false removes it")
    wandb_project: str = helpf("", "W&B project (report_to=wandb; a non-empty value also turns wandb on)")
    progress: bool = helpf(True, "show a progress bar")
    gradient_checkpointing: bool = helpf(False, "recompute each transformer block's activations in backward "
                                                "instead of storing them (less memory, ~1/3 more compute)")

    def __post_init__(self):
        self.report_to = resolve_report_to(self.report_to, self.tensorboard, self.wandb_project)
        if self.parallel not in PARALLEL:
            raise ValueError(f"train.parallel must be one of {PARALLEL}, got {self.parallel!r}")
        for name in ("max_steps", "per_device_batch_size", "micro_batch_size", "steps_per_generation",
                     "num_iterations", "logging_steps", "image_rows", "max_nonfinite_steps", "sample_num",
                     "gen_metrics_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("save_steps", "image_steps", "save_total_limit", "sample_steps", "sample_top_k",
                     "gen_metrics_steps", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0 (0 = {ZERO_MEANS[name]}), got {getattr(self, name)}")
        if not self.sample_cfg_scale >= 0:
            raise ValueError(f"train.sample_cfg_scale must be >= 0 (1 = unguided), got {self.sample_cfg_scale}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not self.output_dir:
            raise ValueError("train.output_dir must not be empty")


REPORT_TO = ("tensorboard", "wandb")


def resolve_report_to(report_to: list[str], tensorboard: bool | None, wandb_project: str) -> list[str]:
    """TRL's `report_to` with the old switches as aliases: tensorboard=true/false adds/removes TensorBoard, a W&B
    project adds wandb."""
    names = [n.strip().lower() for n in ([report_to] if isinstance(report_to, str) else report_to) if n.strip()]
    if "all" in names:
        names = list(REPORT_TO)
    names = [n for n in names if n != "none"]
    bad = [n for n in names if n not in REPORT_TO]
    if bad:
        raise ValueError(f"train.report_to: unknown backend {bad[0]!r}; use {', '.join(REPORT_TO)}, all or none")
    if tensorboard is True and "tensorboard" not in names:
        names.append("tensorboard")
    if tensorboard is False:
        names = [n for n in names if n != "tensorboard"]
    if wandb_project and "wandb" not in names:
        names.append("wandb")
    return list(dict.fromkeys(names))


@dataclass
class RunConfig:
    # Names other libraries use for something that differs here: answered with an explanation, never aliased.
    FOREIGN_NAMES: ClassVar[dict[str, str]] = {
        "per_device_train_batch_size": "TRL's per_device_train_batch_size counts completions; vapi's "
        "train.per_device_batch_size counts real images, each sampled objective.num_generations times (sequences = "
        "images × G)"}
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ste: SteConfig = field(default_factory=SteConfig)
    tokenizer: TokenizerMethodConfig = field(default_factory=TokenizerMethodConfig)
    grpo: GrpoConfig = field(default_factory=GrpoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        self.grad_accum_steps  # validates the batch arithmetic early
        if self.objective.name != "ce" and not self.reward.any_term:
            example = "reward.classifier=1 or reward.functions=[module:function]" if self.objective.name == "grpo" \
                else "reward.mse=1"
            raise ValueError(f"every reward weight is 0 (reward.mse, l1, lpips, discriminator, codebook_cosine, "
                             f"features, classifier, clip, functions): objective.name={self.objective.name} needs at "
                             f"least one, e.g. {example}")

    @staticmethod
    def flat_name_sections(data: dict) -> list[str]:
        """A flat override naming an option several methods have (`num_generations=4`, `temperature=0.9`) sets the
        selected method's: its section first, then `objective`."""
        name = (data.get("objective") or {}).get("name", "vapi")
        return [name, "objective"] if name in ("ste", "tokenizer", "grpo") else ["objective"]

    @property
    def rows_per_image(self) -> int:
        """Sequences the method trains on per real image: G for the group methods, 1 for ce / ste / tokenizer."""
        return {"vapi": self.objective.num_generations, "grpo": self.grpo.num_generations}.get(self.objective.name, 1)

    @property
    def sequences_per_step(self) -> int:
        return self.train.per_device_batch_size * self.rows_per_image

    @property
    def micro_batch_size(self) -> int:
        """Rows per forward/backward pass: train.micro_batch_size, or fewer when an optimizer step has fewer rows."""
        return min(self.train.micro_batch_size, max(1, self.sequences_per_step // self.train.steps_per_generation))

    @property
    def grad_accum_steps(self) -> int:
        """Micro-batches per optimizer step; the rollout batch must split evenly."""
        n, mb, k = self.sequences_per_step, self.micro_batch_size, self.train.steps_per_generation
        if n % (mb * k):
            options = [d for d in range(1, n + 1) if n % (d * k) == 0]
            raise ValueError(
                f"a rollout batch of per_device_batch_size × sequences per image = {self.train.per_device_batch_size}"
                f" × {self.rows_per_image} = {n} sequences does not split into steps_per_generation={k} "
                f"optimizer steps of micro_batch_size={mb}; set train.micro_batch_size to one of {options}")
        return n // (mb * k)
