"""Shared pieces of the bad-input suite: a tiny run config, a crafted pickle that would leave a marker file."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from tiny import tiny_config, tiny_policy, tiny_tokenizer
from vapi.data.procedural import ProceduralShapes
from vapi.training.trainer import Trainer


class Payload:
    """Unpickling this runs code that creates `marker`: a test passes only if the file never appears."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"import pathlib; pathlib.Path({self.marker!r}).touch()",)


def malicious_pickle(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def write_malicious_pt(path: Path, marker: Path) -> None:
    torch.save({"state": Payload(marker)}, path)


def data():
    return ProceduralShapes(32, image_size=16, seed=0)


def run_config(tmp_path, **train):
    train = {"max_steps": 2, "save_steps": 1, **train}
    return tiny_config(tmp_path, **train)


def trainer(cfg, resume=False, policy_seed=0):
    return Trainer(cfg, tiny_policy(seed=policy_seed), tiny_tokenizer(), data(), resume=resume)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
