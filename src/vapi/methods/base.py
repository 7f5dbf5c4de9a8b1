"""The method interface the trainer composes: what a post-training method is, in three calls.

A method
  - names what it trains: `model` (the module the optimizer owns and checkpoints save: the generator, or the tokenizer
    for `tokenizer`) and `forward_module` (what the trainer wraps for DDP/FSDP; usually `model`), and `bind(wrapped)`
    hands the wrapped module back for its differentiable forward passes;
  - turns a batch of real data into what it trains on: `prepare(images, cond, keep_images) → Prepared` (no grad:
    teacher-forced rollouts, free-running samples, the clean tokens...), whose `work` has `len()` rows and
    `select(rows)`;
  - gives the loss of a micro-batch of those rows: `loss(work.select(rows)) → (mean loss, {name: detached 0-dim})`.
The trainer owns the loop, micro-batching, accumulation, the optimizer, logging, checkpoints and resume, identically
for every method, and never asks which method it runs.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, NamedTuple

import torch
import torch.nn as nn

from vapi.models.protocols import condition_size, index_condition


@dataclass
class MethodContext:
    """What a method borrows from the trainer."""

    device: torch.device
    autocast: Callable[[], ContextManager]  # bf16 autocast on GPU (train.precision), else a null context
    generator: torch.Generator  # the run's sampling generator: saved in every checkpoint, so draws resume exactly


class Grid(NamedTuple):
    """Images for the run's image log: real [r, 3, H, W], samples [r*k, 3, H, W] (k per real image), scores [r*k]."""

    real: torch.Tensor
    samples: torch.Tensor
    scores: torch.Tensor | None


class Prepared(NamedTuple):
    work: Any  # rows the loss trains on: len(work) and work.select(rows)
    metrics: dict[str, float]  # this rank's statistics of the preparation
    scores: torch.Tensor | None = None  # [rows] rewards, when the method has any: the trainer gathers them over ranks
    grid: Grid | None = None


class Rows:
    """Base of a method's work record (a dataclass): every field is a tensor or a Condition with the rows first;
    `select` slices them all (a micro-batch)."""

    def __len__(self) -> int:
        return condition_size(getattr(self, dataclasses.fields(self)[0].name))

    def select(self, index: slice | torch.Tensor):
        return type(self)(**{f.name: index_condition(getattr(self, f.name), index) for f in dataclasses.fields(self)})


class Method(abc.ABC):
    """Base class: a method sets `model` (and `forward_module` if it differs) in its constructor and implements
    `prepare` (real batch → work rows) and `loss` (work rows → loss, detached stats)."""

    model: nn.Module
    wrapped: nn.Module

    @property
    def forward_module(self) -> nn.Module:
        return self.model

    def bind(self, wrapped: nn.Module) -> None:
        self.wrapped = wrapped

    @abc.abstractmethod
    def prepare(self, images: torch.Tensor, cond, keep_images: int = 0) -> Prepared:
        """Turn a batch of real images and their conditions into what this method trains on."""

    @abc.abstractmethod
    def loss(self, work) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one micro-batch of work rows and its detached stats."""


def freeze(module: nn.Module) -> nn.Module:
    return module.eval().requires_grad_(False)
