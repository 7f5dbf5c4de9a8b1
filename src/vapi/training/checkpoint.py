"""Training checkpoints, for one process, DDP and FSDP alike, resumable on any world size; `Checkpointer` owns them.

`<run>/checkpoints/step-XXXXXX/`:
  model/                the trained model as a vapi model folder (safetensors + config.json), gathered to rank 0:
                        what `vapi sample`, `vapi convert` and exports read, and where a resume takes the weights
                        from (every rank reads it and keeps its shard);
  dcp/                  torch.distributed.checkpoint of {"optimizer"} (+ "model": the LoRA adapters, which the
                        merged model/ cannot give back): each rank writes its own shard, keyed by parameter name, so
                        a resume re-shards to any world size (2 ranks → 1, 8 → 16). The weights are stored once
                        (`training.checkpoint_weights`); older checkpoints whose dcp/ holds the model still resume;
  rng/rank-NNNNN.pt     each rank's TrainState (step, sampling generator, torch/python/CUDA RNG);
  config.yaml           the run config that wrote it, compared with the new one on resume;
  trainer_state.pt      rank 0: scheduler, data position, step, world size, skipped (non-finite) steps.
Every rank must call `save_checkpoint` and `load_checkpoint` (collectives); under torchrun the run folder must be on
a filesystem all ranks share.

Commit protocol (crash-safe at any instant): the folder is assembled as `.step-N.tmp`, every
file and folder is fsynced, an existing `step-N` is renamed aside to `.step-N.old`, the tmp is renamed in (the
commit), then the aside copy is deleted. Rotation renames an old committed folder to `.step-N.del` before deleting
it, never touches the newest, and never touches anything uncommitted. `cleanup_leftovers` runs at start: `.tmp`
and `.del` folders are removed, an `.old` folder whose replacement never got renamed in is restored.

Nothing read on resume is unpickled beyond plain data (`training.safe_load`): model/ is safetensors, `.pt` files
load with `torch.load(weights_only=True)`, DCP's `.metadata` pickle through an unpickler that allows only DCP's
metadata classes, and DCP reads its tensor files with `weights_only=True`. Anything else is refused with one line
naming the file.
"""
from __future__ import annotations

import json
import os
import uuid
import shutil
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
import yaml
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)

from vapi.config import to_dict
from vapi.models.weights_io import save_pretrained
from vapi.models.lora import merged_state_dict
from vapi.models.state_dict_io import read_model_config
from vapi.training.checkpoint_weights import (MODEL, check_lora_base, dcp_model_keys, dcp_model_state,
                                              load_model_weights)
from vapi.training.distributed import barrier
from vapi.training.safe_load import (SafeLoadPlanner, SafeMetadataReader, UnsafeCheckpointError,  # noqa: F401 (re-exported)
                                     safe_load_metadata, safe_torch_load)

PREFIX = "step-"
# Test hook: called with the name of each phase of a save (fault injection kills the process there).
fault_hook: Callable[[str], None] | None = None


def _phase(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_of(path: Path) -> int:
    return int(path.name[len(PREFIX):])


def _is_step_name(name: str) -> bool:
    return name.startswith(PREFIX) and name[len(PREFIX):].isdigit()


def is_complete(path: Path) -> bool:
    """Every part a resume reads is there (a folder half-deleted by an older vapi may keep some of them)."""
    return all((path / part).is_file() for part in ("trainer_state.pt", "dcp/.metadata", "model/config.json"))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Committed checkpoints, oldest first; a `step-N` folder missing a part is not one."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if _is_step_name(p.name) and is_complete(p)), key=step_of)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _rng_file(path: Path, rank: int) -> Path:
    return path / "rng" / f"rank-{rank:05d}.pt"


# ------------------------------------------------------------------------------------------ commit and cleanup
def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def cleanup_leftovers(run_dir: Path) -> list[str]:
    """Finish or undo what a killed save/rotation left (rank 0, before anything reads checkpoints); return notes."""
    root = checkpoint_dir(run_dir)
    notes: list[str] = []
    if not root.is_dir():
        return notes
    for p in sorted(root.iterdir()):
        name = p.name
        if name.startswith(f".{PREFIX}") and name.endswith(".old"):
            final = root / name[1:-len(".old")]
            if is_complete(final):
                shutil.rmtree(p)
                notes.append(f"removed {name} (replaced by a committed {final.name})")
            else:
                if final.exists():
                    shutil.rmtree(final)
                os.replace(p, final)
                notes.append(f"restored {final.name} from {name} (its replacement was never committed)")
        elif name.startswith(f".{PREFIX}") and (name.endswith(".tmp") or name.endswith(".del")):
            shutil.rmtree(p)
            notes.append(f"removed {name} (an interrupted {'save' if name.endswith('.tmp') else 'rotation'})")
        elif _is_step_name(name) and not is_complete(p):
            notes.append(f"ignored {name}: incomplete (a part is missing), left as it is")
        elif name.startswith(f".{LATEST}.tmp-") and p.is_file():
            p.unlink()  # a pointer update killed before its rename; `latest` itself is whole
    if notes:
        _fsync_dir(root)
    return notes


def _dcp(fn, state: dict, path: Path, **kw) -> None:
    with warnings.catch_warnings():
        # One process without a process group is a supported case, not a mistake worth a warning per checkpoint.
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        fn(state, checkpoint_id=str(path), **kw)


def save_checkpoint(run_dir: Path, step: int, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_state: dict, rank_state: dict, *, rank: int = 0, keep: int = 2,
                    config: dict | None = None) -> Path:
    """Called by every rank. `policy` is the unwrapped model (FSDP2-sharded or not), `trainer_state` rank 0's global
    state, `rank_state` this rank's TrainState. `keep` committed checkpoints stay (0 = all)."""
    root = checkpoint_dir(run_dir)
    final = root / f"{PREFIX}{step:06d}"
    tmp, aside = root / f".{final.name}.tmp", root / f".{final.name}.old"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "rng").mkdir(parents=True)
    barrier()
    # Under FSDP both calls are collectives; cpu_offload leaves the gathered full weights on rank 0 only.
    full = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    state = {"optimizer": get_optimizer_state_dict(policy, optimizer)}
    adapters = dcp_model_state(policy)  # the weights themselves are in model/ only
    if adapters:
        state[MODEL] = adapters
    _dcp(dcp.save, state, tmp / "dcp")
    torch.save(rank_state, _rng_file(tmp, rank))
    if rank == 0:
        _phase("tmp-partial")
        save_pretrained(policy, tmp / "model", state_dict=merged_state_dict(policy, full))  # adapters folded in
        if config is not None:
            (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        torch.save(trainer_state, tmp / "trainer_state.pt")
        _phase("tmp-written")
    barrier()
    if rank == 0:
        _fsync_tree(tmp)
        _phase("tmp-synced")
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            _phase("old-aside")
        os.replace(tmp, final)  # the commit
        _fsync_dir(root)
        _phase("committed")
        write_latest(run_dir, final)
        if aside.exists():
            shutil.rmtree(aside)
            _phase("old-deleted")
        _rotate(run_dir, final, keep)
    barrier()
    return final


def _rotate(run_dir: Path, newest: Path, keep: int) -> None:
    if keep <= 0:
        return
    others = [p for p in list_checkpoints(run_dir) if p != newest]
    for old in others[:max(0, len(others) - (keep - 1))]:
        doomed = old.with_name(f".{old.name}.del")
        os.replace(old, doomed)  # atomic: the folder is either committed and whole, or marked for deletion
        _phase("rotate-renamed")
        shutil.rmtree(doomed)
        _phase("rotate-deleted")
    _fsync_dir(checkpoint_dir(run_dir))


def load_checkpoint(path: Path, policy: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    rank: int = 0) -> tuple[dict, dict | None]:
    """Load weights and optimizer state in place (strict, same architecture, any world size); return rank 0's
    trainer state and this rank's TrainState, or None when the checkpoint had fewer ranks."""
    path = Path(path)
    if not (path / "trainer_state.pt").is_file() or not (path / "dcp").is_dir():
        raise FileNotFoundError(f"{path} is not a vapi training checkpoint (no trainer_state.pt and dcp/)")
    _, config = read_model_config(path / "model")
    saved, current = config.to_dict(), policy.config.to_dict()
    if saved != current:
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        raise ValueError(f"cannot resume from {path}: it holds another model (differs in {', '.join(diff)}); "
                         "resume with the same generator or start a new output_dir")
    trainer_state = safe_torch_load(path / "trainer_state.pt")  # checked before DCP touches anything
    rng = _rng_file(path, rank)
    rank_state = safe_torch_load(rng) if rng.is_file() else None
    meta = safe_load_metadata(path / "dcp" / ".metadata")  # refused here, before DCP's own fallbacks and logging
    # Weights from model/, except what dcp/ holds: LoRA adapters, or everything in an older checkpoint.
    in_dcp = dcp_model_keys(meta)
    merged = load_model_weights(path / "model", policy, in_dcp)
    # The templates carry this run's sharding; DCP reads into them whatever the saving run's sharding was.
    state = {"optimizer": get_optimizer_state_dict(policy, optimizer)}
    from_dcp = {k: v for k, v in get_model_state_dict(policy).items() if k in in_dcp}
    if from_dcp:
        state[MODEL] = from_dcp
    try:
        _dcp(dcp.load, state, path / "dcp", storage_reader=SafeMetadataReader(str(path / "dcp")),
             planner=SafeLoadPlanner())
    except UnsafeCheckpointError:
        raise
    except (Exception, CheckpointException) as e:  # DCP wraps every rank's failure in a CheckpointException
        text = str(e)
        if "UnsafeCheckpointError" in text or "weights_only" in text.lower() or "Unpickl" in text:
            raise UnsafeCheckpointError(f"{path / 'dcp'}: refused, a data file is not plain tensors; the checkpoint "
                                        "is corrupt or crafted: resume from another one or delete it") from None
        raise ValueError(f"{path / 'dcp'}: cannot be read ({type(e).__name__}); the checkpoint is corrupt: resume "
                         "from another one or delete it") from None
    if from_dcp:
        set_model_state_dict(policy, state[MODEL], options=StateDictOptions(strict=False))
    check_lora_base(policy, merged, path / "model")
    set_optimizer_state_dict(policy, optimizer, state["optimizer"])
    return trainer_state, rank_state


# ------------------------------------------------------------------------------------------ the component
# On resume these must equal the checkpoint's (another model, other data, other batches or seeds is another run);
# everything else that changed is applied and listed.
FIXED_SECTIONS = ("model.", "data.", "text_encoder.")
FIXED_KEYS = ("objective.name", "objective.num_generations", "grpo.num_generations", "tokenizer.train_post_quant_conv",
              "train.seed", "train.steps_per_generation", "train.num_iterations")
GRID_FOLDERS = ("images", "samples")  # teacher-forced and free-running grids, `step-XXXXXX.png`
NOT_COMPARED = ("train.output_dir", "train.overwrite", "train.per_device_batch_size")
MAY_CHANGE = ("text_encoder.cache_dir", "text_encoder.batch_size", "data.validate")  # no effect on the numbers
PATH_KEYS = ("model.gpt", "model.vq", "data.path", "data.captions_file", "text_encoder.path")


class RunFolderError(ValueError):
    """The run folder holds another run (or not the one asked for); the message says what to do."""


class NonFiniteWeightsError(ValueError):
    """The policy holds NaN/inf: it is not saved (a checkpoint must never hold non-finite weights)."""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def compare_configs(saved: dict, new: dict, saved_world: int, new_world: int) -> tuple[list[str], list[str]]:
    """(refused, applied): 'key old → new' for every key that changed since the checkpoint."""
    a, b = _flatten(saved), _flatten(new)
    refused, applied = [], []
    for key in sorted(set(a) & set(b)):
        if key in NOT_COMPARED or a[key] == b[key] or (key in PATH_KEYS and _same_path(a[key], b[key])):
            continue
        item = f"{key} {a[key]!r} → {b[key]!r}"
        fixed = (key.startswith(FIXED_SECTIONS) or key in FIXED_KEYS) and key not in MAY_CHANGE
        (refused if fixed else applied).append(item)
    # A new world size is hardware, not a new run (the data position is re-mapped); a new per-device batch is
    # accepted only where it keeps the global batch (e.g. 2 ranks × 4 resumed as 1 × 8).
    key = "train.per_device_batch_size"
    if key in a and key in b:
        old, now = a[key] * saved_world, b[key] * new_world
        if a[key] != b[key] and old != now:
            refused.append(f"{key} {a[key]!r} → {b[key]!r} (global batch {old} → {now})")
        elif old != now:
            applied.append(f"world size {saved_world} → {new_world} (global batch {old} → {now})")
        elif a[key] != b[key]:
            applied.append(f"{key} {a[key]!r} → {b[key]!r} (same global batch on {new_world} rank(s))")
    return refused, applied


def _same_path(a, b) -> bool:
    norm = lambda p: os.path.realpath(os.path.expanduser(p))  # noqa: E731
    return isinstance(a, str) and isinstance(b, str) and bool(a) and bool(b) and norm(a) == norm(b)


def _weights_finite(policy: torch.nn.Module) -> bool:
    ok = True
    for p in policy.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p  # FSDP2: each rank checks its shard
        ok = ok and bool(torch.isfinite(local).all())
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        flag = torch.tensor([0.0 if ok else 1.0], device=next(policy.parameters()).device)
        torch.distributed.all_reduce(flag)
        ok = flag.item() == 0
    return ok


class Checkpointer:
    """Owns a run's checkpoints: the folder rule, cleanup, resume (with the config comparison), cadence, commit and
    rotation. Statefuls: the policy with its optimizer (DCP), scheduler, data stream, and this rank's TrainState."""

    def __init__(self, cfg, policy, optimizer, scheduler, stream, state, dist, guard=None,
                 log: Callable[[str], None] = print):
        self.cfg, self.policy, self.optimizer, self.scheduler = cfg, policy, optimizer, scheduler
        self.stream, self.state, self.dist, self.guard = stream, state, dist, guard
        self.run_dir = Path(cfg.train.output_dir)
        self.log = log if dist.rank == 0 else (lambda _msg: None)
        self.last_saved_step: int | None = None  # the step whose checkpoint this run already holds
        self.resumed_from: Path | None = None

    # --- start: cleanup, folder rule, resume --------------------------------------------------------------------
    def start(self, resume: str | bool | None) -> None:
        """`resume`: False/None = a new run (refused if the folder holds checkpoints, unless train.overwrite);
        True/"auto" = the latest checkpoint, or a fresh start with a note; "must" = the latest or an error; a path =
        that checkpoint (or the latest of that run folder)."""
        if self.dist.rank == 0:
            for note in cleanup_leftovers(self.run_dir):
                self.log(f"note: {checkpoint_dir(self.run_dir)}: {note}")
        barrier()
        existing = list_checkpoints(self.run_dir)
        path = None
        if resume in (None, False, ""):
            if existing:
                self._refuse_or_clear(existing)
        elif resume is True or resume in ("auto", "must"):
            path = latest_step_dir(self.run_dir)  # the `latest` pointer, else the highest complete step
            if path is None and resume == "must":
                raise RunFolderError(f"--resume=must: no checkpoint in {self.run_dir} to resume from")
            if path is None:
                self.log(f"note: no checkpoint in {self.run_dir}, starting fresh")
        else:
            path = Path(resume)
            if (path / "checkpoints").is_dir():
                path = latest_step_dir(path) or path  # the run's `latest` pointer, as plain --resume
            if existing and path.resolve().parent != checkpoint_dir(self.run_dir).resolve():
                self._refuse_or_clear(existing)
        if path is not None:
            self._load(path)
        if self.dist.rank == 0:
            truncate_metrics(self.run_dir / "metrics.jsonl", self.state.step)
            for folder in GRID_FOLDERS:  # grids of the killed attempt's later steps
                for grid in (self.run_dir / folder).glob(f"{PREFIX}*.png"):
                    if grid.stem[len(PREFIX):].isdigit() and int(grid.stem[len(PREFIX):]) > self.state.step:
                        grid.unlink()
        barrier()

    def _refuse_or_clear(self, existing: list[Path]) -> None:
        if not self.cfg.train.overwrite:
            raise RunFolderError(
                f"train.output_dir {self.run_dir} already holds a run (newest checkpoint {existing[-1].name}): add "
                "--resume to continue it, set train.overwrite=true to replace it, or choose a new train.output_dir")
        barrier()
        if self.dist.rank == 0:
            for name in ("checkpoints", "tensorboard", "metrics.jsonl", "run_summary.json"):
                p = self.run_dir / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            for folder in GRID_FOLDERS:  # only vapi's own grids: a user's files there stay
                for grid in (self.run_dir / folder).glob(f"{PREFIX}*.png"):
                    grid.unlink()
                if (self.run_dir / folder).is_dir() and not any((self.run_dir / folder).iterdir()):
                    (self.run_dir / folder).rmdir()
            self.log(f"note: train.overwrite=true: removed the previous run's checkpoints, metrics, TensorBoard, "
                     f"grids and run summary in {self.run_dir}")
        barrier()

    def _load(self, path: Path) -> None:
        saved_cfg = None
        if (path / "config.yaml").is_file():
            saved_cfg = yaml.safe_load((path / "config.yaml").read_text())
        trainer_state, rank_state = load_checkpoint(path, self.policy, self.optimizer, self.dist.rank)
        applied: list[str] = []
        if isinstance(saved_cfg, dict):
            new = yaml.safe_load(yaml.safe_dump(to_dict(self.cfg), sort_keys=False))
            refused, applied = compare_configs(saved_cfg, new, int(trainer_state["world_size"]), self.dist.world_size)
            if refused:
                raise RunFolderError(f"cannot resume {path} with changed {'; '.join(refused)}: these cannot change "
                                     "mid-run; restore them, or start a new train.output_dir")
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        self.stream.load_state_dict(trainer_state["data"])  # re-mapped when the world size changed
        if rank_state is not None and trainer_state["world_size"] == self.dist.world_size:
            self.state.load_state_dict(rank_state)  # exact: every rank continues its own RNG streams
        else:  # per-rank streams have no counterpart on another world size: new ones, from (seed, step, rank)
            self.state.step, self.state.optimizer_steps = trainer_state["step"], trainer_state["optimizer_steps"]
            self.state.reseed(self.cfg.train.seed * 1_000_003 + self.state.step * 1_009 + self.dist.rank)
        if self.guard is not None:
            self.guard.skipped_steps = int(trainer_state.get("skipped_steps", 0))
        if any(a.startswith(("optim.", "train.max_steps")) for a in applied):
            self._rebase_optimizer()
        if applied:
            self.log(f"note: resuming {path} with changed {'; '.join(applied)} (applied from step "
                     f"{self.state.step})")
        if self.state.step >= self.cfg.train.max_steps:
            self.log(f"note: {path.name} is at step {self.state.step}, train.max_steps={self.cfg.train.max_steps}: "
                     "nothing left to train (raise train.max_steps to continue)")
        if path.resolve().parent == checkpoint_dir(self.run_dir).resolve():
            self.last_saved_step = step_of(path)
            newer = [p.name for p in list_checkpoints(self.run_dir) if step_of(p) > step_of(path)]
            if newer:
                self.log(f"note: resuming from {path.name} while newer checkpoints exist ({', '.join(newer)}): each "
                         "is replaced when this run reaches its step")
        self.resumed_from = path

    def _rebase_optimizer(self) -> None:
        """The optimizer and scheduler states carry the old hyperparameters: set this config's, and re-base the
        schedule (its shape comes from this config's max_steps) at the current step."""
        o, groups = self.cfg.optim, self.optimizer.param_groups
        for g in groups:
            g["initial_lr"], g["betas"], g["eps"] = o.learning_rate, (o.adam_beta1, o.adam_beta2), o.adam_epsilon
        groups[0]["weight_decay"] = o.weight_decay  # build_optimizer's layout: decayed params, then norms (no decay)
        self.scheduler.base_lrs = [o.learning_rate] * len(groups)
        for g, factor in zip(groups, self.scheduler.lr_lambdas):
            g["lr"] = o.learning_rate * factor(self.scheduler.last_epoch)
        self.scheduler._last_lr = [g["lr"] for g in groups]

    # --- saving ------------------------------------------------------------------------------------------------
    def maybe_save(self, step: int, last: bool) -> Path | None:
        every = self.cfg.train.save_steps
        if not (last or (every > 0 and step % every == 0)) or step == self.last_saved_step:
            return None
        return self.save()

    def save(self) -> Path:
        """Every rank takes part (full-weight gather, sharded writes)."""
        if not _weights_finite(self.policy):
            raise NonFiniteWeightsError(
                f"step {self.state.step}: the policy holds non-finite weights; not saved, the last good checkpoint "
                f"is {latest_checkpoint(self.run_dir) or 'none'}")
        trainer_state = {"scheduler": self.scheduler.state_dict(), "data": self.stream.state_dict(),
                         "step": self.state.step, "optimizer_steps": self.state.optimizer_steps,
                         "world_size": self.dist.world_size,
                         "skipped_steps": self.guard.skipped_steps if self.guard is not None else 0}
        path = save_checkpoint(self.run_dir, self.state.step, self.policy, self.optimizer, trainer_state,
                               self.state.state_dict(), rank=self.dist.rank, keep=self.cfg.train.save_total_limit,
                               config=yaml.safe_load(yaml.safe_dump(to_dict(self.cfg), sort_keys=False)))
        self.last_saved_step = self.state.step
        return path


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the rows of steps <= `step` (what the resumed state has done); drop later ones and a torn last line."""
    if not path.is_file():
        return
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            ok = isinstance(row, dict) and int(row.get("step", 0)) <= step
        except (ValueError, TypeError):
            ok = False
        if ok:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(f"{line}\n" for line in keep))
        os.replace(tmp, path)


# --- the `latest` pointer ------------------------------------------------------------------------------------
LATEST = "latest"


def write_latest(run_dir: str | os.PathLike, step_dir: str | os.PathLike) -> Path:
    """Point `<run>/checkpoints/latest` at `step_dir` (tmp file + rename: readers never see half a name)."""
    root = checkpoint_dir(Path(run_dir))
    pointer = root / LATEST
    tmp = root / f".{LATEST}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(Path(step_dir).name + "\n")
    os.replace(tmp, pointer)
    return pointer


def latest_step_dir(run_dir: str | os.PathLike) -> Path | None:
    """The step folder `latest` names when it is complete, else the newest complete one, else None."""
    root = checkpoint_dir(Path(run_dir))
    pointer = root / LATEST
    if pointer.is_file():
        target = root / pointer.read_text().strip()
        if target.name and is_complete(target):
            return target
    found = list_checkpoints(Path(run_dir))
    return found[-1] if found else None
