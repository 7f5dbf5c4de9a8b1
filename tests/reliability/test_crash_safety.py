"""SIGKILL at every phase of a checkpoint save and rotation, then resume: the newest committed checkpoint always
loads, leftovers are cleaned, and the final weights equal an uninterrupted run's bit for bit.

Each attempt is a forked child (cheap: torch is already imported) that installs `checkpoint.fault_hook` and kills
itself with SIGKILL (by its own PID) at the n-th occurrence of one named phase of `save_checkpoint`.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys

import pytest
import torch

from helpers import run_config, trainer, weights
from tiny import tiny_policy
from vapi.models.state_dict_io import read_folder_weights
from vapi.training import checkpoint as ckpt
from vapi.training.optim import build_optimizer

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork + SIGKILL")

PHASES = ("tmp-partial", "tmp-written", "tmp-synced", "committed", "rotate-renamed", "rotate-deleted")
MAX_STEPS = 30  # enough for every attempt below to die before the end
ROUNDS = 2  # each save/rotation phase is hit this many times, at different steps


def _attempt(cfg, resume, phase: str | None, occurrence: int) -> None:
    torch.set_num_threads(1)
    seen = {}

    def hook(name):
        seen[name] = seen.get(name, 0) + 1
        if name == phase and seen[name] == occurrence:
            os.kill(os.getpid(), signal.SIGKILL)

    ckpt.fault_hook = hook
    try:
        trainer(cfg, resume=resume).train()
    except BaseException as e:  # a child must not return into pytest
        print(f"child failed: {e}", file=sys.stderr)
        os._exit(1)
    os._exit(0)


def attempt(cfg, resume=True, phase=None, occurrence=1) -> int:
    child = mp.get_context("fork").Process(target=_attempt, args=(cfg, resume, phase, occurrence))
    child.start()
    child.join(120)
    return child.exitcode


def check_consistent(cfg) -> int:
    """Every `step-*` folder is complete and the newest loads; return its step."""
    root = ckpt.checkpoint_dir(cfg.train.output_dir)
    steps = [p for p in root.iterdir() if p.name.startswith("step-")]
    latest = ckpt.latest_checkpoint(cfg.train.output_dir)
    policy = tiny_policy(seed=7)
    state, _ = ckpt.load_checkpoint(latest, policy, build_optimizer(policy, cfg.optim))
    # A half-deleted step folder may only exist as a dot-folder (.del/.old/.tmp) that the next start cleans.
    assert all(ckpt.is_complete(p) for p in steps), sorted(p.name for p in root.iterdir())
    return state["step"]


def test_sigkill_at_every_save_and_rotation_phase(tmp_path):
    ref_cfg = run_config(tmp_path / "ref", max_steps=MAX_STEPS)
    reference = trainer(ref_cfg)
    reference.train()

    cfg = run_config(tmp_path / "killed", max_steps=MAX_STEPS)
    kills = 0
    assert attempt(cfg, resume=False, phase="tmp-written", occurrence=2) == -signal.SIGKILL  # the first run
    kills += 1
    for phase in PHASES * ROUNDS:  # each attempt commits one checkpoint, then dies in the next save at `phase`
        assert attempt(cfg, phase=phase, occurrence=2) == -signal.SIGKILL, phase
        kills += 1
        check_consistent(cfg)
    # Re-saving an existing step (resume from an older checkpoint of the same run): killed with the old copy aside.
    for phase in ("old-aside", "committed", "old-deleted"):
        older = ckpt.list_checkpoints(cfg.train.output_dir)[0]
        assert attempt(cfg, resume=str(older), phase=phase) == -signal.SIGKILL, phase
        kills += 1
        check_consistent(cfg)
    assert attempt(cfg) == 0  # the rest of the run, uninterrupted
    assert check_consistent(cfg) == MAX_STEPS
    root = ckpt.checkpoint_dir(cfg.train.output_dir)
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]
    # A finished run resumed again saves nothing: a kill at any save phase would not fire.
    mtime = ckpt.latest_checkpoint(cfg.train.output_dir).stat().st_mtime_ns
    assert attempt(cfg, phase="tmp-partial") == 0
    assert ckpt.latest_checkpoint(cfg.train.output_dir).stat().st_mtime_ns == mtime

    final = read_folder_weights(ckpt.latest_checkpoint(cfg.train.output_dir) / "model")
    for name, value in reference.policy.state_dict().items():
        assert torch.equal(final[name], value), name
    print(f"\n{kills} SIGKILLs during save/rotation; final weights equal the uninterrupted run's")
    assert kills == 1 + len(PHASES) * ROUNDS + 3


def test_a_half_deleted_checkpoint_is_ignored_with_a_note(tmp_path, capsys):
    """What an older vapi's rmtree-in-place rotation could leave: trainer_state.pt present, dcp/ gone."""
    import shutil

    cfg = run_config(tmp_path, max_steps=3, save_total_limit=3)
    trainer(cfg).train()
    newest = ckpt.latest_checkpoint(cfg.train.output_dir)
    shutil.rmtree(newest / "dcp")
    capsys.readouterr()
    resumed = trainer(run_config(tmp_path, max_steps=3, save_total_limit=3), resume=True)
    assert resumed.state.step == 2
    assert f"ignored {newest.name}: incomplete" in capsys.readouterr().out
    assert (newest / "trainer_state.pt").is_file()  # left as it is, not deleted
