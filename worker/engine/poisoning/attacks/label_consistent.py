"""Label-consistent backdoor: target-class samples made hard with PGD on a clean surrogate, then triggered."""

from typing import ClassVar

import numpy as np
import torch

from app.schemas.evasion import PgdParams
from app.schemas.poisoning import LabelConsistentParams, PoisoningAttackBase
from worker.engine.batching import batch_bounds
from worker.engine.evasion.attacks.pgd import PGD
from worker.engine.poisoning.attacks.base import Backdoor, check_class
from worker.engine.poisoning.attacks.triggers import PatchTrigger, Trigger
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, choose

_BATCH = 256


class LabelConsistent(Backdoor):
    """Label-consistent (clean-label) backdoor.

    Paper: Turner, Tsipras and Madry, "Label-Consistent Backdoor Attacks", 2019.

    Threat model: clean-label; the attacker changes only inputs of the target class and never a
    label. Each chosen target-class sample is first pushed away from its own class by an untargeted
    linf PGD attack (the evasion engine's PGD) on a clean surrogate, within `eps`, so the victim cannot
    learn it from its content and leans on the trigger instead; then the patch trigger is stamped on.
    Outside the trigger's pixels every poison stays within eps of its original.

    Parameters:
        target_class: default 0.
        eps: linf budget of the adversarial perturbation, default 0.2 (input-range units).
        steps: PGD steps, default 20; step_size default None (2.5 * eps / steps).
        trigger: a PatchTrigger spec (default 2x2 at the bottom right, top of the range).
    `rate` is the share of the target class poisoned. Success: triggered held-out samples not of the
    target class classified as the target class.
    """

    spec_type: ClassVar[type[PoisoningAttackBase]] = LabelConsistentParams
    spec: LabelConsistentParams
    paper: ClassVar[str] = "Turner, Tsipras and Madry 2019 (label-consistent backdoor)"
    threat_model: ClassVar[str] = (
        "clean-label backdoor: target-class samples perturbed within eps on a clean surrogate, then "
        "triggered; no label changes"
    )

    def __init__(self, spec: PoisoningAttackBase) -> None:
        """Keep the spec; the trigger is built by `check`."""
        super().__init__(spec)
        self._trigger: Trigger | None = None

    def check(
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        input_range: tuple[float, float],
        pattern: np.ndarray | None = None,
    ) -> None:
        """The target class must exist and the patch fit the image."""
        check_class(self.spec.target_class, num_classes, "target_class")
        self._trigger = PatchTrigger(self.spec.trigger).build(sample_shape, input_range)

    def train_trigger(self) -> Trigger:
        """The patch built by `check`."""
        if self._trigger is None:
            raise RuntimeError("label_consistent: call check() before poisoning")
        return self._trigger

    def intended(self, y: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Every triggered held-out input should become the target class; target-class inputs do not count."""
        return np.full_like(y, self.spec.target_class), y != self.spec.target_class

    def eligible(self, y: np.ndarray) -> np.ndarray:
        """Only target-class samples are changed."""
        return np.flatnonzero(y == self.spec.target_class)

    def base_size(self, y: np.ndarray) -> int:
        """The rate is a share of the target class."""
        return int((y == self.spec.target_class).sum())

    def craft_units(self, n_poison: int) -> float:
        """PGD steps per poison."""
        return float(n_poison * (int(self.spec.steps) + 1))

    def poison(self, ctx: PoisonContext, rate: float, key: int) -> PoisonedSet:
        """PGD within eps on the surrogate, then the trigger; labels are copied unchanged."""
        model = ctx.need_surrogate()
        indices = choose(ctx.rng(key), self.eligible(ctx.y), self.count(ctx.y, rate))
        attack = PGD(
            PgdParams(
                name="pgd",
                norm="linf",
                eps=[self.spec.eps],
                steps=self.spec.steps,
                step_size=self.spec.step_size,
            ),
            input_range=ctx.input_range,
        )
        generator = ctx.generator(key)
        x = ctx.x.copy()
        for start, stop in batch_bounds(len(indices), _BATCH):
            chosen = indices[start:stop]
            xb = torch.as_tensor(ctx.x[chosen], device=ctx.device)
            yb = torch.as_tensor(ctx.y[chosen], device=ctx.device)
            result = attack.run(model, xb, yb, eps=float(self.spec.eps), generator=generator)
            x[chosen] = result.x_adv.cpu().numpy()
            ctx.advance(
                (stop - start) * (int(self.spec.steps) + 1), f"label_consistent: PGD {stop}/{len(indices)}"
            )
        trigger = self.train_trigger()
        x[indices] = trigger.apply(x[indices])
        return PoisonedSet(
            x=x, y=ctx.y.copy(), indices=indices, eps=float(self.spec.eps), free=trigger.support
        )
