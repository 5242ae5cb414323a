"""A training recipe: optimizer, schedule and budget, shared by every kind that trains a model."""

from dataclasses import dataclass, fields
from typing import Any, Literal, Self, get_args

import torch
from torch import nn

OptimizerName = Literal["adam", "sgd"]
ScheduleName = Literal["constant", "cosine", "step", "cyclic"]
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)
CYCLE_PEAK = 0.4  # the cyclic schedule peaks two fifths of the way through training (Wong et al. 2020)


@dataclass(frozen=True)
class TrainingRecipe:
    """How a model is trained.

    Parameters:
        epochs: passes over the training set.
        batch_size: samples per optimizer step.
        optimizer: "adam" or "sgd" (with `momentum` and `nesterov`).
        learning_rate: the initial learning rate.
        weight_decay: L2 penalty (decoupled for neither optimizer: torch's `weight_decay`).
        schedule: "constant", "cosine" (annealed to 0 over all epochs), "step" (multiplied by `gamma`
            every `step_epochs` epochs) or "cyclic" (one triangle: linear from 0 up to `learning_rate` at
            two fifths of training, then linear down to 0; Smith's one-cycle policy as fast adversarial
            training uses it, Wong et al. 2020).
    """

    epochs: int = 20
    batch_size: int = 64
    optimizer: OptimizerName = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: ScheduleName = "constant"
    step_epochs: int = 10
    gamma: float = 0.1

    def __post_init__(self) -> None:
        """Refuse a recipe that cannot train."""
        if self.epochs < 0 or self.batch_size < 1 or self.step_epochs < 1:
            raise ValueError("epochs must be >= 0, batch_size and step_epochs >= 1")
        if not self.learning_rate > 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError("learning_rate must be > 0, weight_decay >= 0 and momentum in [0, 1)")
        if self.optimizer not in ("adam", "sgd") or self.schedule not in SCHEDULES:
            raise ValueError(f"unknown optimizer {self.optimizer!r} or schedule {self.schedule!r}")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Self:
        """A recipe from a validated spec; unknown keys are an error, None keeps the default."""
        names = {field.name for field in fields(cls)}
        unknown = sorted(set(spec) - names)
        if unknown:
            raise ValueError(f"unknown training parameters: {', '.join(unknown)}")
        return cls(**{key: value for key, value in spec.items() if value is not None})

    def build_optimizer(self, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
        """The optimizer this recipe names, over the given parameters."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                parameters,
                lr=self.learning_rate,
                momentum=self.momentum,
                nesterov=self.nesterov and self.momentum > 0,
                weight_decay=self.weight_decay,
            )
        return torch.optim.Adam(parameters, lr=self.learning_rate, weight_decay=self.weight_decay)

    def learning_rate_at(self, epoch: int, fraction: float = 0.0) -> float:
        """The scheduled learning rate at `epoch` (0-based) plus `fraction` of the next one."""
        if self.schedule == "cosine":
            progress = (epoch + fraction) / max(self.epochs, 1)
            return self.learning_rate * 0.5 * (1.0 + torch.cos(torch.tensor(torch.pi * progress)).item())
        if self.schedule == "cyclic":
            progress = (epoch + fraction) / max(self.epochs, 1)
            if progress <= CYCLE_PEAK:
                return self.learning_rate * progress / CYCLE_PEAK
            return self.learning_rate * max(0.0, (1.0 - progress) / (1.0 - CYCLE_PEAK))
        if self.schedule == "step":
            return self.learning_rate * self.gamma ** (epoch // self.step_epochs)
        return self.learning_rate
