"""Find the model folder a user means: a run folder (its latest checkpoint), a step folder, or a model folder.

    <run>/config.yaml
    <run>/checkpoints/latest               text: the name of the newest complete step folder (written atomically)
    <run>/checkpoints/step-000100/model/   a vapi model folder (what `vapi sample` / `eval` / `convert` load)

`resolve_model_dir(path)` maps any of `<run>`, `<run>/checkpoints`, `<run>/checkpoints/step-N` and
`<run>/checkpoints/step-N/model` to the model folder; a file or an unrelated folder comes back unchanged, so the
loaders report their own errors. Without a `latest` pointer (older runs) the newest complete step folder is used.
"""
from __future__ import annotations

import os
from pathlib import Path

from vapi.training.checkpoint import LATEST, checkpoint_dir, latest_step_dir, write_latest  # noqa: F401

def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def resolve_model_dir(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir() or _is_model_dir(path):
        return path
    if _is_model_dir(path / "model"):  # a step folder
        return path / "model"
    run = path.parent if path.name == "checkpoints" else path
    if checkpoint_dir(run).is_dir():
        step = latest_step_dir(run)
        if step is None:
            raise FileNotFoundError(f"{run} is a run folder without a complete checkpoint yet")
        return step / "model"
    return path


def run_dir_of(path: str | os.PathLike) -> Path | None:
    """The run folder holding `path` (a run, step or model folder), or None."""
    path = Path(path).expanduser().resolve()
    for candidate in (path, *path.parents[:4]):
        if (candidate / "config.yaml").is_file() and checkpoint_dir(candidate).is_dir():
            return candidate
    return None
