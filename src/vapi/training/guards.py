"""Start and step checks of the trainer: the data/tokenizer/generator geometry, and the non-finite step guard.

A step whose loss, any reward or the gradient norm is non-finite is skipped: a NaN/inf reward or loss makes the
gradient norm non-finite (advantages and the surrogate propagate it), and `Trainer._optimizer_step` then drops the
gradients without an optimizer or scheduler step. `NonFiniteGuard` counts such steps (`skipped_steps` in the
metrics) and stops the run after `train.max_nonfinite_steps` in a row, before anything is saved, so the last good
checkpoint is the newest. (The step still consumes its batch and RNG draws, as a resumed run would.)
"""
from __future__ import annotations

import math

WATCHED = ("loss", "grad_norm", "reward")


class NonFiniteError(ValueError):
    """Too many non-finite steps in a row; the message is one line for the CLI."""


class NonFiniteGuard:
    def __init__(self, max_in_a_row: int):
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.skipped_steps = 0
        self._skipped_update = False

    def begin_step(self) -> None:
        self._skipped_update = False

    def skipped_update(self) -> None:
        """Called when an optimizer update was dropped for a non-finite gradient norm."""
        self._skipped_update = True

    def end_step(self, metrics: dict[str, float], step: int, checkpointer) -> None:
        bad = sorted(k for k, v in metrics.items() if k.startswith(WATCHED) and not math.isfinite(v))
        if not (bad or self._skipped_update):
            self.in_a_row = 0
            metrics["skipped_steps"] = self.skipped_steps
            return
        self.skipped_steps += 1
        self.in_a_row += 1
        metrics["skipped_steps"] = self.skipped_steps
        what = ", ".join(bad) or "gradient norm"
        if self.in_a_row >= self.max_in_a_row:
            raise NonFiniteError(
                f"stopped at step {step}: {self.in_a_row} steps in a row had a non-finite {what} and were skipped "
                f"(train.max_nonfinite_steps={self.max_in_a_row}); nothing was saved, the last good checkpoint is "
                f"{_latest(checkpointer)}; lower optim.learning_rate or check the data and reward")
        checkpointer.log(f"warning: step {step}: non-finite {what}; update skipped ({self.in_a_row} in a row)")


def _latest(checkpointer) -> str:
    from vapi.training.checkpoint import latest_checkpoint

    return str(latest_checkpoint(checkpointer.run_dir) or "none")


def check_geometry(dataset, policy, tokenizer) -> None:
    """The data's image size, the tokenizer's downsample factor and the generator's token grid must agree."""
    downsample = getattr(tokenizer, "downsample", None)
    tokens = getattr(policy, "num_image_tokens", None)
    if not isinstance(downsample, int) or not isinstance(tokens, int) or len(dataset) == 0:
        return
    h, w = dataset[0][0].shape[-2:]
    grid = math.isqrt(tokens)
    if h % downsample or w % downsample or (h // downsample) * (w // downsample) != tokens:
        raise ValueError(f"the data's images are {h}x{w} px, which the tokenizer (downsample {downsample}) turns into "
                         f"{h / downsample:g}x{w / downsample:g} tokens, but the generator predicts {tokens} "
                         f"({grid}x{grid}): set data.image_size={grid * downsample}")
