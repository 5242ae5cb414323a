"""Per-epoch training curves of a defense and the guard against catastrophic overfitting.

After each epoch the monitor measures, on a fixed held-out subset, clean accuracy and PGD robust
accuracy at the training budget (the curve of the report). With the guard on (fast adversarial
training), it also measures PGD and training-attack (FGSM) accuracy on a fixed subset of the training
set; when PGD accuracy falls far below its best so far, or stays far below the FGSM accuracy, the model has
catastrophically overfitted (Wong et al. 2020: robustness to PGD collapses while accuracy under the
single-step training attack rises): training stops and the fit loop restores the best epoch
(`keep_best` on GUARD_METRIC).
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.engine.batching import batch_bounds
from worker.engine.defense.adversarial_losses import Budget, CrossEntropy, pgd_perturb
from worker.engine.progress import ProgressTracker
from worker.engine.seeding import seeded_generator
from worker.engine.training.fit import StopTraining

GUARD_METRIC = "guard_pgd_accuracy"
TRAINING_ATTACK_METRIC = "guard_training_attack_accuracy"
# PGD of the curves and of the guard: 10 steps of 2.5 * eps / 10 from a random start.
MONITOR_STEPS = 10
# The guard fires when PGD accuracy on the training subset drops GUARD_DROP below its best epoch, or
# when, for GUARD_PATIENCE epochs in a row, it stays below GUARD_RATIO of the accuracy under the
# training attack while that accuracy has risen at least GUARD_MIN_GAIN above the starting model's:
# the model has learned to resist the single step it trains on, but not PGD. Without the gain, a model
# early in training (a pretrained model's first epochs, a cyclic schedule's warm-up) shows the same
# ratio because one step is naturally far weaker than PGD, and nothing has collapsed.
GUARD_DROP = 0.2
GUARD_RATIO = 0.25
GUARD_MIN_GAIN = 0.2
GUARD_PATIENCE = 2
_MONITOR_KEY, _GUARD_KEY = 0xC0, 0xC1


def _accuracies(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    budget: Budget | None,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[float, float | None]:
    """Clean accuracy and, with a budget, PGD robust accuracy of a subset."""
    clean = robust = 0
    for start, stop in batch_bounds(len(x), 256):
        xb, yb = x[start:stop].to(device), y[start:stop].to(device)
        with torch.no_grad():
            clean += int((model(xb).argmax(1) == yb).sum())
        if budget is not None:
            x_adv = pgd_perturb(model, xb, CrossEntropy(yb), budget, generator)
            with torch.no_grad():
                robust += int((model(x_adv).argmax(1) == yb).sum())
    return clean / len(x), (robust / len(x) if budget is not None else None)


@dataclass
class EpochMonitor:
    """The fit loop's epoch callback: curve rows, and the overfitting guard when `guard_x` is given."""

    x: np.ndarray
    y: np.ndarray
    budget: Budget | None
    device: torch.device
    seed: int
    tracker: ProgressTracker | None = None
    guard_x: np.ndarray | None = None
    guard_y: np.ndarray | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    fired: dict[str, Any] | None = None
    _best: float = -1.0
    _strikes: int = 0
    start_training_attack_accuracy: float = 0.0

    def units(self) -> float:
        """Work units of one epoch's monitoring (forward-backward passes of samples)."""
        steps = MONITOR_STEPS + 2 if self.budget is not None else 1
        guard = 0 if self.guard_x is None else len(self.guard_x) * (MONITOR_STEPS + 2)
        return len(self.x) * steps + guard

    def budget_for_monitoring(self) -> Budget | None:
        """PGD-10 at the training eps."""
        if self.budget is None:
            return None
        return Budget(
            self.budget.eps,
            self.budget.norm,
            MONITOR_STEPS,
            2.5 * self.budget.eps / MONITOR_STEPS,
            True,
            self.budget.input_range,
        )

    def _guard_accuracy(self, model: nn.Module, budget: Budget) -> float:
        """Accuracy of the guard's training subset under an attack of `budget` (its fixed random stream)."""
        guard_x, guard_y = torch.as_tensor(self.guard_x), torch.as_tensor(self.guard_y, dtype=torch.long)
        generator = seeded_generator(self.device, self.seed, _GUARD_KEY)
        return float(_accuracies(model, guard_x, guard_y, budget, generator, self.device)[1] or 0.0)

    def measure_start(self, model: nn.Module) -> float:
        """The training attack's accuracy on the guard subset before training: the guard's baseline."""
        if self.guard_x is None or self.guard_y is None or self.budget is None:
            return 0.0
        was_training = model.training
        model.eval()
        self.start_training_attack_accuracy = self._guard_accuracy(model, self.budget)
        model.train(was_training)
        return self.start_training_attack_accuracy

    def __call__(self, epoch: int, model: nn.Module) -> dict[str, float]:
        """Measure the epoch; raise StopTraining when the guard fires."""
        x, y = torch.as_tensor(self.x), torch.as_tensor(self.y, dtype=torch.long)
        pgd = self.budget_for_monitoring()
        generator = seeded_generator(self.device, self.seed, _MONITOR_KEY)
        clean, robust = _accuracies(model, x, y, pgd, generator, self.device)
        metrics: dict[str, float] = {"clean_accuracy": clean}
        if robust is not None:
            metrics["robust_accuracy"] = robust
        if (
            self.guard_x is not None
            and self.guard_y is not None
            and pgd is not None
            and self.budget is not None
        ):
            # each from the same random stream as the baseline, so the training attack's gain is comparable
            metrics[GUARD_METRIC] = self._guard_accuracy(model, pgd)
            metrics[TRAINING_ATTACK_METRIC] = self._guard_accuracy(model, self.budget)
        self.rows.append({"epoch": epoch, **metrics})
        if self.tracker is not None:
            self.tracker.advance(self.units(), f"epoch {epoch}: measuring clean and robust accuracy")
        guard = metrics.get(GUARD_METRIC)
        if guard is not None:
            single = metrics[TRAINING_ATTACK_METRIC]
            gained = single - self.start_training_attack_accuracy >= GUARD_MIN_GAIN
            below = gained and guard < GUARD_RATIO * single
            self._strikes = self._strikes + 1 if below else 0
            if self._best - guard > GUARD_DROP or self._strikes >= GUARD_PATIENCE:
                best = max(self._best, 0.0)
                self.fired = {
                    "epoch": epoch,
                    "guard_pgd_accuracy": guard,
                    "best_guard_pgd_accuracy": best,
                    "training_attack_accuracy": single,
                    "start_training_attack_accuracy": self.start_training_attack_accuracy,
                }
                raise StopTraining(
                    f"catastrophic overfitting at epoch {epoch}: PGD accuracy on the training subset "
                    f"{guard:.1%} (best {best:.1%}) against {single:.1%} under the training attack"
                )
            self._best = max(self._best, guard)
        return metrics
