"""What attacks get (the clean training set and the attacker's means) and give back (a poisoned set)."""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from app.schemas.poisoning import PoisoningAttackBase
from worker.engine.progress import ProgressTracker
from worker.engine.seeding import numpy_rng, seeded_generator

MIN_CLEAN_SHARE = PoisoningAttackBase.min_clean_share


@dataclass(frozen=True)
class TargetSample:
    """One target of a targeted clean-label attack: a held-out sample and the class it should become."""

    index: int
    x: np.ndarray
    label: int
    intended: int


@dataclass
class PoisonedSet:
    """The training set after poisoning: inputs, labels and the sorted indices of the changed samples.

    `eps` bounds |x - x_clean| (linf) on every poisoned sample outside `free`, the pixels a trigger
    may set freely (None: everywhere); clean-label attacks have `eps` and keep every label.
    """

    x: np.ndarray
    y: np.ndarray
    indices: np.ndarray
    eps: float | None = None
    free: np.ndarray | None = None
    target: TargetSample | None = None

    @property
    def n_poisoned(self) -> int:
        """How many training samples the attack changed."""
        return int(len(self.indices))


@dataclass
class PoisonContext:
    """The clean training set and what the attacker holds: a clean surrogate, an uploaded pattern."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_range: tuple[float, float]
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    surrogate: nn.Module | None = None
    pattern: np.ndarray | None = None
    progress: ProgressTracker | None = None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input."""
        return tuple(int(d) for d in self.x.shape[1:])

    def rng(self, *keys: int) -> np.random.Generator:
        """An independent NumPy stream for one attack run."""
        return numpy_rng(self.seed, 101, *keys)

    def generator(self, *keys: int) -> torch.Generator:
        """An independent torch stream on the device for one attack run."""
        return seeded_generator(self.device, self.seed, 103, *keys)

    def advance(self, units: float, stage: str) -> None:
        """Report crafting progress (the callback may raise to cancel)."""
        if self.progress is not None:
            self.progress.advance(units, stage)

    def need_surrogate(self) -> nn.Module:
        """The clean surrogate; ValueError when the runner trained none."""
        if self.surrogate is None:
            raise ValueError("this attack needs a clean surrogate model")
        return self.surrogate


def poison_count(rate: float, base: int) -> int:
    """round(rate * base), the number of samples a rate poisons."""
    if not 0 < rate < 1:
        raise ValueError(f"rate must lie strictly between 0 and 1, got {rate}")
    return int(round(rate * base))


def check_count(n: int, eligible: int, base: int, what: str) -> None:
    """Refuse n poisons that change nothing, exceed the candidates or leave too few clean samples."""
    if n < 1:
        raise ValueError(f"the rate poisons no sample of {base} {what}; raise it")
    if n > eligible:
        raise ValueError(f"the rate asks for {n} poisons but only {eligible} {what} can be poisoned")
    if base - n < math.ceil(MIN_CLEAN_SHARE * base):
        raise ValueError(f"the rate leaves fewer than {MIN_CLEAN_SHARE:.0%} of the {base} {what} clean")


def choose(rng: np.random.Generator, candidates: np.ndarray, n: int) -> np.ndarray:
    """n distinct candidates drawn uniformly, sorted."""
    return np.sort(rng.choice(np.asarray(candidates), size=n, replace=False)).astype(np.int64)
