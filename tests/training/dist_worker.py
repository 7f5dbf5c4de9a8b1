"""The 2-rank half of test_distributed.py, launched by torchrun (gloo on CPU):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/training/dist_worker.py OUT

For each of ddp and fsdp it trains the tiny policy 2 steps with 2 images per rank, checkpointing after each step
(OUT/<parallel>/run/checkpoints/step-00000{1,2}), then resumes step 1 on the 2 ranks into OUT/<parallel>_resumed
(every rank reads the weights from model/ and keeps its shard); then `vapi sample` draws OUT/gpt's samples into
OUT/samples2 with the ranks sharing the shards. The single-rank halves run in the test process and compare.

Comparable math on 1 and 2 ranks: dropout off (policy_mode=eval), and `per_image_rollout` replaces the rollout of
`vapi.methods.vapi` so that each image's context noise and G samples come from a generator seeded by the image
itself, not from a per-rank stream; group advantages are per image, so they are the same on any rank either way.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tiny.py

from tiny import tiny_config, tiny_policy, tiny_tokenizer  # noqa: E402
from vapi.data.procedural import ProceduralShapes  # noqa: E402
from vapi.objectives.rollout import Rollout, teacher_forced_rollout  # noqa: E402


def per_image_rollout(logits_fn, cond, gt_tokens, *, generator=None, **kwargs) -> Rollout:
    """`teacher_forced_rollout`, one image at a time, each with a generator seeded by its tokens."""
    parts = []
    for b in range(gt_tokens.shape[0]):
        seed = hash(tuple(gt_tokens[b].tolist())) % 2**31  # ints hash the same in every process
        g = torch.Generator(device=gt_tokens.device).manual_seed(seed)
        parts.append(teacher_forced_rollout(logits_fn, cond[b:b + 1], gt_tokens[b:b + 1], generator=g, **kwargs))
    return Rollout(*(torch.cat(t) for t in zip(*(p[:-1] for p in parts))), parts[0].group_size)


def dataset():
    return ProceduralShapes(64, image_size=16, seed=0)


def equivalence_config(root: Path, parallel: str, per_device_batch_size: int):
    """2 steps of G=4 with micro-batches of 4 sequences: 2 images/rank → 2 accumulated micro-batches (DDP skips the
    all-reduce of the first), 4 images on one rank → 4. Every micro-batch loss is a mean over equal-sized groups, so
    both average the same 16 per-sequence terms."""
    cfg = tiny_config(root, max_steps=2, save_steps=1, per_device_batch_size=per_device_batch_size,
                      micro_batch_size=4, parallel=parallel, device="cpu")
    cfg.objective.policy_mode = "eval"  # no dropout: the same function on every rank
    cfg.objective.update_layout = "shared"  # one forward per image (what auto picks in eval mode), stated here
    # Adam's first step is lr·g/(|g| + eps): for the few entries whose clipped gradient is ~1e-11, far below the
    # default eps=1e-8, the rounding of summing in another order (per rank vs per micro-batch, ~1e-7 relative to
    # the largest terms) moves the update by up to ~2e-5. eps=1e-6 keeps that map well-conditioned; entries with
    # real gradients (up to ~1e-4 after clipping) still move by ~lr = 1e-3.
    cfg.optim.adam_epsilon = 1e-6
    return cfg


def sample_args(root: Path, out_dir: Path) -> list[str]:
    return ["sample", "--gpt", str(root / "gpt"), "--vq", str(root / "vq"), "--image-size", "16",
            "--num-samples", "6", "--shard-size", "2", "--batch-size", "2", "--out-dir", str(out_dir),
            "--cfg", "1", "--top-k", "0", "--device", "cpu"]


def main(out: Path) -> None:
    from vapi.cli import main as cli_main
    from vapi.methods import vapi as vapi_method
    from vapi.training import trainer as trainer_module
    from vapi.training.distributed import exit_process, init_distributed

    torch.set_num_threads(1)
    info = init_distributed("cpu")
    vapi_method.teacher_forced_rollout = per_image_rollout
    for parallel in ("ddp", "fsdp"):
        cfg = equivalence_config(out / parallel, parallel, per_device_batch_size=2)
        trainer_module.Trainer(cfg, tiny_policy(), tiny_tokenizer(), dataset(), dist=info).train()
        step1 = out / parallel / "run" / "checkpoints" / "step-000001"
        cfg = equivalence_config(out / f"{parallel}_resumed", parallel, per_device_batch_size=2)
        trainer_module.Trainer(cfg, tiny_policy(seed=123), tiny_tokenizer(), dataset(), dist=info,
                               resume=str(step1)).train()
    code = cli_main(sample_args(out, out / "samples2"))
    exit_process(code)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
