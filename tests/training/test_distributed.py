"""2 ranks (torchrun, gloo on CPU) against 1 rank: DDP and FSDP2 updates, save on 2 → resume on 1, sharded sampling.

The 2-rank side runs once per module (`dist_worker.py`, one torchrun launch, ~10 s); each test compares one of its
outputs with the same work done here on one rank with the same global batch (2 ranks × 2 images = 1 × 4). A second
launch runs the real CLI: `torchrun -m vapi train train.parallel=fsdp`, then `--resume` on one process.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dist_worker import dataset, equivalence_config, per_image_rollout, sample_args
from tiny import tiny_policy, tiny_tokenizer
from vapi.cli import main
from vapi.data.procedural import ProceduralShapes, save_as_image_folder
from vapi.methods import vapi as vapi_method
from vapi.models.weights_io import save_pretrained
from vapi.models.state_dict_io import read_folder_weights
from vapi.training import trainer as trainer_module
from vapi.training.distributed import DistInfo
from vapi.training.parallelize import resolve_parallel
from vapi.training.state import BatchStream

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-5  # max abs parameter difference allowed between 2 ranks and 1 rank


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_ranks")
    save_pretrained(tiny_policy(), root / "gpt")
    save_pretrained(tiny_tokenizer(), root / "vq")
    done = torchrun([str(HERE / "dist_worker.py"), str(root)], cwd=root)
    return root, done.stdout


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def checkpoint(root: Path, parallel: str, step: int) -> Path:
    return root / parallel / "run" / "checkpoints" / f"step-{step:06d}"


@pytest.mark.distributed
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_one_update_on_two_ranks_equals_one_rank(two_ranks, parallel, tmp_path, monkeypatch):
    root, _ = two_ranks
    monkeypatch.setattr(vapi_method, "teacher_forced_rollout", per_image_rollout)
    policy = tiny_policy()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    cfg = equivalence_config(tmp_path, "none", per_device_batch_size=4)
    metrics = trainer_module.Trainer(cfg, policy, tiny_tokenizer(), dataset()).step()
    two = read_folder_weights(checkpoint(root, parallel, 1) / "model")
    diff, update = max_abs_diff(two, policy.state_dict()), max_abs_diff(policy.state_dict(), before)
    print(f"\n{parallel}: one update, 2 ranks vs 1 rank: max abs param diff {diff:.3e} (largest update {update:.3e})")
    assert diff <= TOLERANCE and update > 50 * TOLERANCE  # the update itself is ~lr = 1e-3
    # Reward statistics are gathered over both ranks before rank 0 logs them.
    logged = [json.loads(line) for line in (root / parallel / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [1, 2]
    assert logged[0]["reward"] == pytest.approx(metrics["reward"], abs=1e-6)
    assert logged[0]["reward_std"] == pytest.approx(metrics["reward_std"], abs=1e-6)


@pytest.mark.distributed
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_save_on_two_ranks_resume_on_one(two_ranks, parallel, tmp_path, monkeypatch):
    """Resume the 2-rank step-1 checkpoint on 1 rank: weights, Adam state (re-sharded) and data position carry
    over, so the 1-rank step 2 equals the 2-rank step 2."""
    root, _ = two_ranks
    saved = checkpoint(root, parallel, 1)
    assert sorted(p.name for p in (saved / "rng").iterdir()) == ["rank-00000.pt", "rank-00001.pt"]
    monkeypatch.setattr(vapi_method, "teacher_forced_rollout", per_image_rollout)
    cfg = equivalence_config(tmp_path, "none", per_device_batch_size=4)
    policy = tiny_policy(seed=123)  # a different init: everything must come from the checkpoint
    trainer = trainer_module.Trainer(cfg, policy, tiny_tokenizer(), dataset(), resume=str(saved))
    assert (trainer.state.step, trainer.stream.epoch, trainer.stream.index) == (1, 0, 1)  # 4 images seen
    assert max_abs_diff(read_folder_weights(saved / "model"), policy.state_dict()) == 0.0
    trainer.step()
    diff = max_abs_diff(read_folder_weights(checkpoint(root, parallel, 2) / "model"), policy.state_dict())
    print(f"\n{parallel}: step 2 resumed on 1 rank vs continued on 2 ranks: max abs param diff {diff:.3e}")
    assert diff <= TOLERANCE


@pytest.mark.distributed
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_save_and_resume_on_two_ranks_is_bit_exact(two_ranks, parallel):
    """The 2-rank step-1 checkpoint resumed on 2 ranks (weights from model/, read and sharded by every rank; Adam
    state from dcp/) ends step 2 with exactly the weights of the uninterrupted 2-rank run."""
    root, _ = two_ranks
    want = read_folder_weights(checkpoint(root, parallel, 2) / "model")
    got = read_folder_weights(root / f"{parallel}_resumed" / "run" / "checkpoints" / "step-000002" / "model")
    assert max_abs_diff(want, got) == 0.0


@pytest.mark.distributed
def test_sampling_on_two_ranks_gives_the_same_images(two_ranks, tmp_path, capsys):
    root, stdout = two_ranks
    assert "rank 0/2: generated 2 shards" in stdout and "rank 1/2: generated 1 shards" in stdout
    assert main(sample_args(root, tmp_path / "samples1")) == 0
    one, two = np.load(tmp_path / "samples1" / "samples.npz"), np.load(root / "samples2" / "samples.npz")
    assert one["arr_0"].shape == (6, 16, 16, 3)
    assert np.array_equal(one["arr_0"], two["arr_0"]) and np.array_equal(one["arr_1"], two["arr_1"])


@pytest.mark.distributed
def test_torchrun_cli_fsdp_then_resume_on_one_process(tmp_path):
    data = save_as_image_folder(ProceduralShapes(24, image_size=16, seed=1), tmp_path / "images")
    save_pretrained(tiny_policy(), tmp_path / "gpt")
    save_pretrained(tiny_tokenizer(), tmp_path / "vq")
    run = tmp_path / "run"
    args = [f"model.gpt={tmp_path / 'gpt'}", f"model.vq={tmp_path / 'vq'}", f"data.path={data}",
            "objective.num_generations=4", "train.per_device_batch_size=4", "train.micro_batch_size=8",
            "reward.lpips=0", "train.progress=false", "train.image_steps=1", "train.save_steps=1",
            "train.device=cpu", "optim.learning_rate=1e-3", f"train.output_dir={run}"]
    done = torchrun(["-m", "vapi", "train", *args, "train.max_steps=2", "train.parallel=fsdp"], cwd=tmp_path)
    assert done.stdout.count("done: 2 steps") == 1  # rank 0 alone reports
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert sorted(p.name for p in (run / "images").iterdir()) == ["step-000001.png", "step-000002.png"]
    last = run / "checkpoints" / "step-000002"
    assert {p.name for p in last.iterdir()} == {"model", "dcp", "rng", "config.yaml", "trainer_state.pt"}
    assert main(["train", *args, "train.max_steps=3", "--resume"]) == 0  # 1 process, parallel=auto → none
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_data_position_carries_across_world_sizes():
    """2 ranks × 2 images consume perm[0:4], perm[4:8]; one rank of 4 resumed there continues at perm[8:12]."""
    data = [(torch.zeros(3, 2, 2), i) for i in range(20)]
    two = [BatchStream(data, 2, seed=0, rank=r, world_size=2) for r in (0, 1)]
    for stream in two:
        next(stream), next(stream)
    one = BatchStream(data, 4, seed=0)
    one.load_state_dict(two[0].state_dict())
    assert sorted(one._indices()) == sorted(two[0]._indices() + two[1]._indices())
    odd = BatchStream(data, 3, seed=0)  # 8 images seen, global batch 3: restart at 6 (nothing skipped)
    odd.load_state_dict(two[0].state_dict())
    assert odd.index == 2


def test_parallel_choice():
    assert resolve_parallel("auto", DistInfo()) == "none"
    assert resolve_parallel("auto", DistInfo(world_size=2, is_distributed=True)) == "ddp"
    with pytest.raises(ValueError, match="torchrun"):
        resolve_parallel("fsdp", DistInfo())
