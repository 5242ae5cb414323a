"""Shared pieces of an evasion evaluation: the evaluated data, progress accounting and seeding."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class EvaluationData:
    """The evaluated set on the CPU, its clean logits and correctness, and the batch bounds."""

    x: Tensor
    y: Tensor
    logits: Tensor
    clean_correct: Tensor
    batches: list[tuple[int, int]]


class ProgressTracker:
    """Turns work units into a monotone fraction for the caller's callback."""

    def __init__(self, total: float, callback: ProgressCallback | None) -> None:
        """Start at zero of total units."""
        self.total, self.done, self.callback = max(total, 1.0), 0.0, callback

    def advance(self, units: float, stage: str) -> None:
        """Record finished units and report; exceptions from the callback propagate (cancellation)."""
        self.done = min(self.total, self.done + units)
        if self.callback is not None:
            self.callback(self.done / self.total, stage)


def seeded_generator(device: torch.device, seed: int, *keys: int) -> torch.Generator:
    """A generator on device seeded from the run seed and a position, independent of other attacks."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Start and stop of each batch."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
