"""The poisoning attack interface: built from its typed spec, facts from the spec class, a poison step."""

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from app.schemas.poisoning import PoisoningAttackBase, TargetedParams
from worker.engine.from_spec import FromSpec
from worker.engine.poisoning.attacks.triggers import Trigger
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, TargetSample, check_count, poison_count


def check_class(value: int | None, num_classes: int, name: str) -> None:
    """Refuse a class index outside the model's classes."""
    if value is not None and not 0 <= int(value) < num_classes:
        raise ValueError(f"{name} {value} is outside the model's classes 0..{num_classes - 1}")


class PoisoningAttack(FromSpec, ABC):
    """Base class of poisoning attacks, built from the attack's typed spec (app.schemas.poisoning).

    Each engine class declares `spec_type`, the spec it is built from (the registry's key). Facts the
    runner and the evaluator read come from the spec class, no string dispatch:
        clean_label: the attack never changes a label.
        backdoor: the attack plants a test-time trigger (success: triggered inputs become the target).
        per_target: success is counted per target sample over independent poisonings and retrainings.
        needs_surrogate: the attack crafts on a clean surrogate model the runner trains for it.
        needs_images: inputs must be images [C, H, W].
        rate_of: what `rate` is a share of, "training_set" or "target_class".
    """

    spec_type: ClassVar[type[PoisoningAttackBase]]
    spec: PoisoningAttackBase
    paper: ClassVar[str]
    threat_model: ClassVar[str]

    @property
    def rates(self) -> list[float]:
        """The rates the job runs the attack at."""
        return [float(rate) for rate in self.spec.rate]

    @property
    def clean_label(self) -> bool:
        """The attack never changes a label."""
        return self.spec.clean_label

    @property
    def backdoor(self) -> bool:
        """The attack plants a test-time trigger."""
        return self.spec.backdoor

    @property
    def per_target(self) -> bool:
        """Success is counted per target sample."""
        return self.spec.per_target

    @property
    def needs_surrogate(self) -> bool:
        """The attack crafts on a clean surrogate."""
        return self.spec.needs_surrogate

    @property
    def needs_images(self) -> bool:
        """Inputs must be images [C, H, W]."""
        return self.spec.needs_images

    @property
    def rate_of(self) -> str:
        """What `rate` is a share of."""
        return self.spec.rate_of

    def params(self) -> dict[str, Any]:
        """Effective parameters for the report: the spec without name and rates."""
        return self.spec.model_dump(mode="json", exclude={"name", "rate"})

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


class Backdoor(PoisoningAttack):
    """A poisoning attack that plants a trigger; the evaluator stamps `test_trigger` on held-out inputs."""

    @abstractmethod
    def train_trigger(self) -> Trigger:
        """The trigger stamped on poisoned training samples (after `check`)."""

    def test_trigger(self) -> Trigger:
        """The trigger stamped on held-out inputs at test time (default: the training trigger)."""
        return self.train_trigger()

    @abstractmethod
    def intended(self, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Per held-out label: the class a triggered input should become, and whether it counts."""


class TargetedPoisoning(PoisoningAttack):
    """A targeted clean-label attack: poisons crafted for one held-out target sample at a time."""

    spec: TargetedParams

    def check(
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        input_range: tuple[float, float],
        pattern: np.ndarray | None = None,
    ) -> None:
        """The intended class must be one of the model's classes."""
        check_class(self.spec.intended_class, num_classes, "intended_class")

    def count(self, y: np.ndarray, rate: float) -> int:
        """round(rate * N) poisons, all drawn from one class: it must hold enough samples."""
        n = poison_count(rate, len(y))
        smallest = (
            int(np.bincount(y).min())
            if self.spec.intended_class is None
            else int((y == self.spec.intended_class).sum())
        )
        check_count(n, smallest, len(y), "training samples (of the intended class)")
        return n

    @abstractmethod
    def poison_target(self, ctx: PoisonContext, rate: float, target: TargetSample, key: int) -> PoisonedSet:
        """Poisons for one target: samples of `target.intended` moved within eps, labels untouched."""
