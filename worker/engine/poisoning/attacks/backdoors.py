"""Dirty-label backdoors: BadNets patch triggers and blended triggers, relabelled to the target."""

from typing import Any, ClassVar

import numpy as np

from app.schemas.poisoning import BadNetsParams, BlendedParams, PoisoningAttackBase
from worker.engine.poisoning.attacks.base import Backdoor, check_class
from worker.engine.poisoning.attacks.triggers import (
    PatchTrigger,
    Trigger,
    blend_trigger,
    check_pattern,
    noise_pattern,
)
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, choose


def _relabel(y: np.ndarray, mode: str, target_class: int, num_classes: int) -> np.ndarray:
    """The backdoor's label for samples of label y: the target class, or y + 1 mod K."""
    return np.full_like(y, target_class) if mode == "all_to_one" else (y + 1) % num_classes


class _DirtyLabelBackdoor(Backdoor):
    """Shared steps: choose exactly count(rate) samples, stamp the trigger, relabel them."""

    spec: BadNetsParams | BlendedParams

    def __init__(self, spec: PoisoningAttackBase) -> None:
        """Keep the spec; the trigger is built by `check`."""
        super().__init__(spec)
        self._trigger: Trigger | None = None
        self._num_classes = 0

    def _check_target(self, num_classes: int) -> None:
        """The target mode must be known and the target class one of the model's classes."""
        check_class(self.spec.target_class, num_classes, "target_class")
        if num_classes < 2:
            raise ValueError(f"{self.name} needs at least two classes")
        self._num_classes = num_classes

    def params(self) -> dict[str, Any]:
        """Parameters; the target class only for all_to_one."""
        values = super().params()
        if self.spec.target == "all_to_all":
            values.pop("target_class", None)
        return values

    def eligible(self, y: np.ndarray) -> np.ndarray:
        """All_to_one poisons samples not of the target class; all_to_all any sample."""
        return (
            np.flatnonzero(y != self.spec.target_class)
            if self.spec.target == "all_to_one"
            else np.arange(len(y))
        )

    def train_trigger(self) -> Trigger:
        """The trigger built by `check`."""
        if self._trigger is None:
            raise RuntimeError(f"{self.name}: call check() before poisoning")
        return self._trigger

    def intended(self, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Target labels of triggered held-out inputs; all_to_one counts only non-target samples."""
        counted = (
            y != self.spec.target_class if self.spec.target == "all_to_one" else np.ones(len(y), dtype=bool)
        )
        return _relabel(y, self.spec.target, self.spec.target_class, num_classes), counted

    def poison(self, ctx: PoisonContext, rate: float, key: int) -> PoisonedSet:
        """Stamp the training trigger on exactly count(rate) eligible samples and relabel them."""
        indices = choose(ctx.rng(key), self.eligible(ctx.y), self.count(ctx.y, rate))
        x, y = ctx.x.copy(), ctx.y.copy()
        x[indices] = self.train_trigger().apply(ctx.x[indices])
        y[indices] = _relabel(ctx.y[indices], self.spec.target, self.spec.target_class, ctx.num_classes)
        ctx.advance(len(indices), f"{self.name}: stamped {len(indices)} samples")
        return PoisonedSet(x=x, y=y, indices=indices)


class BadNets(_DirtyLabelBackdoor):
    """BadNets: a small patch trigger on a share of the training set, relabelled to the target.

    Paper: Gu, Dolan-Gavitt and Garg, "BadNets: Identifying Vulnerabilities in the Machine Learning
    Model Supply Chain", 2017.

    Threat model: dirty-label; the attacker stamps the trigger on `rate` x N training samples (not of
    the target class for all_to_one) and relabels them; at test time it stamps the same trigger.

    Parameters:
        trigger: a PatchTrigger spec (size 2, bottom_right, value = top of the input range by default;
            or a checkerboard or seeded random pattern).
        target: "all_to_one" (default: every triggered input becomes `target_class`) or "all_to_all"
            (label y becomes y + 1 mod K).
        target_class: default 0.
    Success: triggered held-out samples (all_to_one: those not of the target class) classified as
    their backdoor label.
    """

    spec_type: ClassVar[type[PoisoningAttackBase]] = BadNetsParams
    spec: BadNetsParams
    paper: ClassVar[str] = "Gu, Dolan-Gavitt and Garg 2017 (BadNets)"
    threat_model: ClassVar[str] = (
        "dirty-label backdoor: a patch trigger stamped on a share of the training set, relabelled"
    )

    def check(
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        input_range: tuple[float, float],
        pattern: np.ndarray | None = None,
    ) -> None:
        """The target must exist and the patch must fit inside the image."""
        self._check_target(num_classes)
        self._trigger = PatchTrigger(self.spec.trigger).build(sample_shape, input_range)


class Blended(_DirtyLabelBackdoor):
    """Blended injection: a whole-image pattern mixed into a share of the training set, relabelled.

    Paper: Chen, Liu, Li, Lu and Song, "Targeted Backdoor Attacks on Deep Learning Systems Using Data
    Poisoning", 2017 (the blended injection strategy).

    Threat model: dirty-label; poisoned inputs are (1 - alpha) x + alpha p for a pattern p, relabelled;
    at test time the attacker blends with `test_alpha` (Chen et al. use a larger one than in training).

    Parameters:
        alpha: blend weight in training, default 0.2.
        test_alpha: blend weight at test time; default None, the training alpha.
        pattern: "noise" (default: uniform noise over the input range, seeded by `pattern_seed`) or
            "uploaded" (the job's uploaded pattern, shaped like one input).
        pattern_seed: default 0.
        target: "all_to_one" (default) or "all_to_all"; target_class: default 0.
    Success: as for BadNets, with the test-time blend.
    """

    spec_type: ClassVar[type[PoisoningAttackBase]] = BlendedParams
    spec: BlendedParams
    paper: ClassVar[str] = "Chen, Liu, Li, Lu and Song 2017 (blended injection)"
    threat_model: ClassVar[str] = (
        "dirty-label backdoor: a pattern blended into a share of the training set, relabelled"
    )

    def __init__(self, spec: PoisoningAttackBase) -> None:
        """Keep the spec; the triggers are built by `check`."""
        super().__init__(spec)
        self._test: Trigger | None = None

    def check(
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        input_range: tuple[float, float],
        pattern: np.ndarray | None = None,
    ) -> None:
        """The target must exist; an uploaded pattern must be shaped like one input, inside the range."""
        self._check_target(num_classes)
        if self.spec.pattern == "uploaded":
            if pattern is None:
                raise ValueError("blended: pattern 'uploaded' needs an uploaded pattern")
            base = check_pattern(pattern, sample_shape, input_range)
        else:
            base = noise_pattern(sample_shape, input_range, self.spec.pattern_seed)
        self._trigger = blend_trigger(base, float(self.spec.alpha))
        test_alpha = float(self.spec.alpha if self.spec.test_alpha is None else self.spec.test_alpha)
        self._test = blend_trigger(base, test_alpha)

    def test_trigger(self) -> Trigger:
        """The pattern at the test-time blend weight."""
        if self._test is None:
            raise RuntimeError("blended: call check() before poisoning")
        return self._test
