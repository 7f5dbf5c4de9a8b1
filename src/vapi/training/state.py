"""Resumable training state: step counter, every RNG, and the data position.

`BatchStream` yields batches from a map-style dataset in a per-epoch permutation seeded by (seed, epoch), sliced per
rank like DistributedSampler (drop_last), so the position is two integers and a resumed run sees exactly the same
images. With `num_workers` > 0 a `torch.utils.data.DataLoader` decodes the batches in worker processes: its batch
sampler starts at the stream's position and the position counts batches handed to training (not those the workers
prefetched), so a resume is as exact as without workers. `TrainState` gathers everything that must be saved for a bit-exact resume on CPU.

Across world sizes (a checkpoint of N ranks resumed on M): the data position is exact whenever
per_device_batch_size × world_size is unchanged (else it restarts at the last whole global batch); RNG streams are
per rank, so they continue exactly only on the same world size and are re-seeded from (seed, step, rank) otherwise.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from vapi.models.protocols import collate_conditions


def collate(items: list) -> tuple[torch.Tensor, object]:
    images = torch.stack([x for x, _ in items])  # [B, 3, H, W]
    return images, collate_conditions([y for _, y in items])  # class ids [B] or one PromptCondition of batch B


class _PositionSampler:
    """The stream's index batches from (epoch, index) on, forever: the DataLoader's batch_sampler."""

    def __init__(self, stream: BatchStream, epoch: int, index: int):
        self.stream, self.epoch, self.index = stream, epoch, index

    def __iter__(self):
        while True:
            yield self.stream._indices(self.epoch, self.index)
            self.index += 1
            if self.index == self.stream.batches_per_epoch:
                self.epoch, self.index = self.epoch + 1, 0


class BatchStream:
    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0):
        per_rank = len(dataset) // world_size
        if per_rank < batch_size:
            raise ValueError(f"the dataset has {len(dataset)} images: fewer than one batch of {batch_size} per rank "
                             f"({world_size} rank(s)); add images or lower train.per_device_batch_size")
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = per_rank // batch_size
        self.epoch, self.index = 0, 0
        if num_workers < 0:
            raise ValueError(f"train.num_workers must be >= 0, got {num_workers}")
        self.num_workers = num_workers
        self._loader = None  # the DataLoader iterator, started at the current position

    def _indices(self, epoch: int | None = None, index: int | None = None) -> list[int]:
        epoch = self.epoch if epoch is None else epoch
        index = self.index if index is None else index
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.dataset), generator=g)
        perm = perm[: len(perm) // self.world_size * self.world_size][self.rank::self.world_size]
        return perm[index * self.batch_size:(index + 1) * self.batch_size].tolist()

    def __iter__(self):
        return self

    def __next__(self):
        if self.num_workers:
            if self._loader is None:
                from torch.utils.data import DataLoader

                loader = DataLoader(self.dataset, batch_sampler=_PositionSampler(self, self.epoch, self.index),
                                    num_workers=self.num_workers, collate_fn=collate, prefetch_factor=2)
                self._loader = iter(loader)
            batch = next(self._loader)
        else:
            batch = collate([self.dataset[i] for i in self._indices()])
        self.index += 1
        if self.index == self.batches_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        return batch

    def close(self) -> None:
        """Stop the worker processes (a later batch starts new ones at the current position)."""
        self._loader = None

    def state_dict(self) -> dict:
        # The ranks together consume a contiguous slice of each epoch's permutation (rank r takes every world-th
        # index), so `images_seen` is the position independent of the world size.
        return {"epoch": self.epoch, "index": self.index,
                "images_seen": self.index * self.batch_size * self.world_size}

    def load_state_dict(self, state: dict) -> None:
        """Exact when batch_size × world_size is unchanged; otherwise resumes at the last whole global batch at or
        before the saved position (so no image of the epoch is skipped, at most one global batch is seen twice)."""
        self.close()
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        if "images_seen" in state:
            self.index = int(state["images_seen"]) // (self.batch_size * self.world_size)
        if self.index >= self.batches_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0


@dataclass
class TrainState:
    step: int = 0  # rollout batches done
    optimizer_steps: int = 0
    sampling_generator: torch.Generator = field(default_factory=torch.Generator)

    def state_dict(self) -> dict:
        state = {"step": self.step, "optimizer_steps": self.optimizer_steps,
                 "sampling_generator": self.sampling_generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "python_rng": list(_py_state())}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step, self.optimizer_steps = int(state["step"]), int(state["optimizer_steps"])
        self.sampling_generator.set_state(state["sampling_generator"])
        torch.set_rng_state(state["torch_rng"])
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def reseed(self, seed: int) -> None:
        """Fresh RNG streams from `seed`: used when a resume changes the world size, as per-rank streams then have
        no counterpart to continue."""
        self.sampling_generator.manual_seed(seed)
        torch.manual_seed(seed)
        random.seed(seed)


def _py_state():
    version, internal, gauss = random.getstate()
    return version, list(internal), gauss
