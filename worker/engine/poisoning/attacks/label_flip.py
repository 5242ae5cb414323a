"""Label flipping: random (symmetric noise), targeted (source to target), nearest (second-best class)."""

from typing import ClassVar

import numpy as np
import torch

from app.schemas.poisoning import LabelFlipParams, PoisoningAttackBase
from worker.engine.poisoning.attacks.base import PoisoningAttack, check_class
from worker.engine.poisoning.data import PoisonContext, PoisonedSet, choose


@torch.no_grad()
def _second_best(ctx: PoisonContext, indices: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The surrogate's second most likely class for each training sample in `indices`."""
    model = ctx.need_surrogate()
    out = []
    for start in range(0, len(indices), batch_size):
        xb = torch.as_tensor(ctx.x[indices[start : start + batch_size]], device=ctx.device)
        logits = model(xb).float()
        rows = torch.arange(len(logits), device=logits.device)
        logits[
            rows, torch.as_tensor(ctx.y[indices[start : start + batch_size]], device=logits.device)
        ] = -torch.inf
        out.append(logits.argmax(1).cpu().numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


class LabelFlip(PoisoningAttack):
    """Label flipping: the attacker relabels a share of the training set, inputs untouched.

    Papers: Xiao, Xiao and Eckert, "Adversarial Label Flips Attack on Support Vector Machines", ECAI
    2012 (label-flip poisoning, with random flips as its baseline); targeted class flips as in
    Tolpegin, Truex, Gursoy and Liu, "Data Poisoning Attacks Against Federated Learning Systems",
    ESORICS 2020.

    Threat model: the attacker changes the labels of `rate` x N training samples (dirty-label); the
    victim trains on them with the job's recipe.

    Parameters:
        mode: "random" (default): each chosen sample gets a uniformly drawn other label;
            "targeted": samples of `source_class` are relabelled `target_class` (rate x N of them,
            at most the whole source class); "nearest": each chosen sample gets the clean surrogate's
            second most likely class, the label the model finds most plausible after the true one
            (the strongest cheap flip).
        source_class: default 0 (targeted only).
        target_class: default 1 (targeted only).
    Success: the clean-accuracy drop against the clean baseline; targeted, also the share of held-out
    source-class samples classified as the target class.
    """

    spec_type: ClassVar[type[PoisoningAttackBase]] = LabelFlipParams
    spec: LabelFlipParams
    paper: ClassVar[str] = "Xiao, Xiao and Eckert 2012 (label flips); Tolpegin et al. 2020 (targeted flips)"
    threat_model: ClassVar[str] = "dirty-label: the attacker relabels a share of the training set"

    @property
    def needs_surrogate(self) -> bool:
        """Only the nearest flip asks a model which class comes second."""
        return self.spec.mode == "nearest"

    @property
    def flip(self) -> tuple[int, int] | None:
        """(source, target) of a targeted flip, None otherwise."""
        return (
            (int(self.spec.source_class), int(self.spec.target_class))
            if self.spec.mode == "targeted"
            else None
        )

    def params(self) -> dict[str, object]:
        """The mode, and the classes where they matter."""
        return {
            "mode": self.spec.mode,
            **(
                {"source_class": self.spec.source_class, "target_class": self.spec.target_class}
                if self.spec.mode == "targeted"
                else {}
            ),
        }

    def check(
        self,
        sample_shape: tuple[int, ...],
        num_classes: int,
        input_range: tuple[float, float],
        pattern: np.ndarray | None = None,
    ) -> None:
        """Classes must exist; a flip needs at least two classes."""
        if num_classes < 2:
            raise ValueError("label_flip needs at least two classes")
        if self.spec.mode == "targeted":
            check_class(self.spec.source_class, num_classes, "source_class")
            check_class(self.spec.target_class, num_classes, "target_class")

    def eligible(self, y: np.ndarray) -> np.ndarray:
        """The source class (targeted) or every sample."""
        return (
            np.flatnonzero(y == self.spec.source_class) if self.spec.mode == "targeted" else np.arange(len(y))
        )

    def poison(self, ctx: PoisonContext, rate: float, key: int) -> PoisonedSet:
        """Relabel exactly count(rate) samples; inputs are left as they are."""
        rng = ctx.rng(key)
        indices = choose(rng, self.eligible(ctx.y), self.count(ctx.y, rate))
        y = ctx.y.copy()
        if self.spec.mode == "targeted":
            y[indices] = self.spec.target_class
        elif self.spec.mode == "nearest":
            y[indices] = _second_best(ctx, indices)
        else:
            shift = rng.integers(1, ctx.num_classes, size=len(indices))
            y[indices] = (ctx.y[indices] + shift) % ctx.num_classes
        ctx.advance(len(indices), f"{self.name}: relabelled {len(indices)} samples")
        return PoisonedSet(x=ctx.x.copy(), y=y, indices=indices)
