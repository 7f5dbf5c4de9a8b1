"""Shared timing helper of the benchmarks (imported by the scripts beside it)."""
from __future__ import annotations

import math
import time

import torch


def timed(fn, device: torch.device, repeats: int):
    """Best wall time of `repeats` calls (the least disturbed by other processes) and the last output."""
    best, out = math.inf, None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out
