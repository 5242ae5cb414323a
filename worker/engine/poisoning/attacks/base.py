"""The poisoning attack interface: typed parameters from a spec, facts as class attributes, a poison step."""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np

from worker.engine.poisoning.attacks.triggers import Trigger
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, TargetSample, check_count, poison_count
from worker.engine.poisoning.spec import dataclass_from_spec, dataclass_params


def check_class(value: int | None, num_classes: int, name: str) -> None:
    """Refuse a class index outside the model's classes."""
    if value is not None and not 0 <= int(value) < num_classes:
        raise ValueError(f"{name} {value} is outside the model's classes 0..{num_classes - 1}")


@dataclass
class PoisoningAttack(ABC):
    """Base class of poisoning attacks: a dataclass of the attack's parameters (published defaults).

    Facts the runner and the evaluator read (class attributes, no string dispatch):
        clean_label: the attack never changes a label.
        backdoor: the attack plants a test-time trigger (success: triggered inputs become the target).
        per_target: success is counted per target sample over independent poisonings and retrainings.
        needs_surrogate: the attack crafts on a clean surrogate model the runner trains for it.
        needs_images: inputs must be images [C, H, W].
        rate_of: what `rate` is a share of, "training_set" or "target_class".
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    threat_model: ClassVar[str]
    clean_label: ClassVar[bool] = False
    backdoor: ClassVar[bool] = False
    per_target: ClassVar[bool] = False
    needs_surrogate: ClassVar[bool] = False
    needs_images: ClassVar[bool] = False
    rate_of: ClassVar[str] = "training_set"

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Build from a spec entry without `name` and `rate`; unknown keys and missing ones are errors."""
        return dataclass_from_spec(cls, spec, cls.name)

    def params(self) -> dict[str, Any]:
        """Effective parameters for the report."""
        return dataclass_params(self)

    def check(  # noqa: B027 - an optional hook, not every attack has data-dependent parameters
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        input_range: tuple[float, float],
        pattern: np.ndarray | None = None,
    ) -> None:
        """Refuse parameters that do not fit the data (ValueError); backdoors build their trigger here."""

    def eligible(self, y: np.ndarray) -> np.ndarray:
        """Indices of the training samples the attack may change (default: all)."""
        return np.arange(len(y))

    def base_size(self, y: np.ndarray) -> int:
        """How many samples `rate` is a share of (the training set by default)."""
        return len(y)

    def count(self, y: np.ndarray, rate: float) -> int:
        """The exact number of poisons at `rate`; ValueError when the rate does not fit the data."""
        base = self.base_size(y)
        n = poison_count(rate, base)
        what = "training samples" if self.rate_of == "training_set" else "samples of the target class"
        check_count(n, len(self.eligible(y)), base, what)
        return n

    def craft_units(self, n_poison: int) -> float:
        """Work units of crafting n poisons (forward-backward passes per sample), for progress."""
        return 0.0

    def poison(self, ctx: PoisonContext, rate: float, key: int) -> PoisonedSet:
        """The poisoned training set at `rate`; `key` separates the random streams of runs."""
        raise NotImplementedError(f"{self.name} poisons per target sample")


@dataclass
class Backdoor(PoisoningAttack):
    """A poisoning attack that plants a trigger; the evaluator stamps `test_trigger` on held-out inputs."""

    backdoor: ClassVar[bool] = True

    @abstractmethod
    def train_trigger(self) -> Trigger:
        """The trigger stamped on poisoned training samples (after `check`)."""

    def test_trigger(self) -> Trigger:
        """The trigger stamped on held-out inputs at test time (default: the training trigger)."""
        return self.train_trigger()

    @abstractmethod
    def intended(self, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Per held-out label: the class a triggered input should become, and whether it counts."""


@dataclass
class TargetedPoisoning(PoisoningAttack):
    """A targeted clean-label attack: poisons crafted for one held-out target sample at a time."""

    per_target: ClassVar[bool] = True
    clean_label: ClassVar[bool] = True
    needs_surrogate: ClassVar[bool] = True

    targets: int = 5
    eps: float = 0.1
    intended_class: int | None = None

    def __post_init__(self) -> None:
        """Refuse an empty trial count or an eps outside (0, 1]."""
        if int(self.targets) < 1:
            raise ValueError(f"{self.name}: targets must be at least 1, got {self.targets}")
        if not 0 < float(self.eps) <= 1:
            raise ValueError(f"{self.name}: eps must lie in (0, 1], got {self.eps}")

    def check(
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        input_range: tuple[float, float],
        pattern: np.ndarray | None = None,
    ) -> None:
        """The intended class must be one of the model's classes."""
        check_class(self.intended_class, num_classes, "intended_class")

    def count(self, y: np.ndarray, rate: float) -> int:
        """round(rate * N) poisons, all drawn from one class: it must hold enough samples."""
        n = poison_count(rate, len(y))
        smallest = (
            int(np.bincount(y).min())
            if self.intended_class is None
            else int((y == self.intended_class).sum())
        )
        check_count(n, smallest, len(y), "training samples (of the intended class)")
        return n

    @abstractmethod
    def poison_target(self, ctx: PoisonContext, rate: float, target: TargetSample, key: int) -> PoisonedSet:
        """Poisons for one target: samples of `target.intended` moved within eps, labels untouched."""
