"""Adversarial training: PGD (Madry et al.), TRADES (Zhang et al.) and fast FGSM (Wong et al.)."""

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from worker.engine.defense.adversarial_losses import Budget, FastLoss, MadryLoss, TradesLoss
from worker.engine.defense.base import (
    MAX_STEPS,
    Defense,
    DefenseContext,
    Hardened,
    TrainingFields,
    check_budget,
    curve,
    train_baseline,
)
from worker.engine.defense.monitor import GUARD_METRIC, MONITOR_STEPS, EpochMonitor
from worker.engine.defense.spec import check_range
from worker.engine.evasion.attacks.norms import check_norm
from worker.engine.seeding import numpy_rng
from worker.engine.training.fit import fit

Method = Literal["pgd", "trades", "fast"]
FAST_STEP = 1.25  # Wong et al.'s FGSM step, in units of eps


@dataclass(frozen=True, kw_only=True)
class AdversarialTraining(TrainingFields, Defense):
    """Adversarial training: the model is trained on adversarial examples of its own.

    Papers: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018
    (method "pgd"); Zhang et al., "Theoretically Principled Trade-off between Robustness and Accuracy",
    ICML 2019 (method "trades"); Wong, Rice and Kolter, "Fast is better than free: Revisiting adversarial
    training", ICLR 2020 (method "fast").

    Threat model trained against: perturbations within eps in linf or l2, inputs in the input range.

    Parameters: method (default "pgd"); norm ("linf" default, "l2"); eps (required); steps of the
    inner maximisation (default 10; "fast" takes one step); step_size (default 2.5 * eps / steps for
    pgd and trades, 1.25 * eps for fast); random_start (default True; fast always starts at random);
    clean_weight (pgd: weight of the clean loss, default 0 = Madry's objective, 0.5 trains on both);
    beta (trades, default 6.0); guard_samples (fast: training samples the catastrophic-overfitting
    guard attacks with PGD-10 after each epoch, default 256; the best epoch by that figure is kept and
    training stops when it collapses); and the training recipe (init, epochs, batch_size, optimizer,
    learning_rate, momentum, weight_decay, schedule).
    """

    name: ClassVar[str] = "adversarial_training"
    method: Method = "pgd"
    norm: Literal["linf", "l2"] = "linf"
    eps: float
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    clean_weight: float = 0.0
    beta: float = 6.0
    guard_samples: int = 256

    def __post_init__(self) -> None:
        """Validate what does not depend on the model."""
        self.check_training()
        if self.method not in ("pgd", "trades", "fast"):
            raise ValueError(f"unknown method {self.method!r}; available: pgd, trades, fast")
        check_norm(self.norm)
        check_range("steps", self.steps, 1, MAX_STEPS)
        check_range("clean_weight", self.clean_weight, 0.0, 1.0)
        check_range("beta", self.beta, 0.0, 100.0)
        check_range("guard_samples", self.guard_samples, 16, 4096)
        if self.step_size is not None:
            check_range("step_size", self.step_size, 0.0, float("inf"), low_open=True)

    def validate(self, sample_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """eps must fit the input range (l2: the diagonal of the input cube)."""
        if self.norm == "linf":
            check_budget("eps", self.eps, input_range)
            return
        limit = (input_range[1] - input_range[0]) * math.sqrt(math.prod(sample_shape))
        if not 0 < self.eps <= limit:
            raise ValueError(
                f"l2 eps must lie in (0, {limit:.4g}] for inputs of shape {list(sample_shape)}: {self.eps}"
            )

    def default_threat(self, input_range: tuple[float, float]) -> tuple[str, list[float]]:
        """Evaluated at the training budget by default."""
        return self.norm, [self.eps]

    def headline_eps(self) -> float | None:
        """The training eps."""
        return self.eps

    def budget(self, input_range: tuple[float, float]) -> Budget:
        """The inner maximisation's budget."""
        if self.method == "fast":
            step = self.step_size if self.step_size is not None else FAST_STEP * self.eps
            return Budget(self.eps, self.norm, 1, step, True, input_range)
        step = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        return Budget(self.eps, self.norm, self.steps, step, self.random_start, input_range)

    def passes_per_sample(self) -> int:
        """Forward-backward passes per trained sample and epoch."""
        if self.method == "fast":
            return 2
        return self.steps + (2 if self.method == "trades" or self.clean_weight > 0 else 1)

    def training_units(self, n_train: int) -> float:
        """Epochs x samples x passes, plus the baseline of a random init and the monitoring."""
        units = self.epochs * n_train * self.passes_per_sample()
        if self.init == "random":
            units += self.epochs * n_train
        guard = self.guard_samples if self.method == "fast" else 0
        return units + self.epochs * (200 + guard) * (MONITOR_STEPS + 2)

    def harden(self, context: DefenseContext) -> Hardened:
        """Train with the method's loss through the fit loop, measuring curves (and the guard) per epoch."""
        x, y = context.training_set()
        recipe = self.recipe()
        budget = self.budget(context.input_range)
        loss: Any
        if self.method == "pgd":
            loss = MadryLoss(budget, self.clean_weight)
        elif self.method == "trades":
            loss = TradesLoss(budget, self.beta)
        else:
            loss = FastLoss(budget)
        baseline = train_baseline(context, recipe) if self.init == "random" else None
        monitor = EpochMonitor(
            *context.monitor, budget=budget, device=context.device, seed=context.seed, tracker=context.tracker
        )
        if self.method == "fast":
            chosen = numpy_rng(context.seed, 0x6A).choice(
                len(x), min(self.guard_samples, len(x)), replace=False
            )
            monitor.guard_x, monitor.guard_y = x[chosen], y[chosen]
        model = context.fresh(self.init)
        if self.method == "fast":
            monitor.measure_start(model)
        history = fit(
            model,
            x,
            y,
            recipe=recipe,
            seed=context.seed,
            device=context.device,
            loss=loss,
            on_epoch=monitor,
            keep_best=GUARD_METRIC if self.method == "fast" else None,
            progress=context.tracker,
            units_per_sample=self.passes_per_sample(),
            stage=f"adversarial training ({self.method})",
        )
        training: dict[str, Any] = {
            "method": self.method,
            "budget": {
                "norm": budget.norm,
                "eps": budget.eps,
                "steps": budget.steps,
                "step_size": budget.step_size,
                "random_start": budget.random_start,
            },
            "curve": curve(history, monitor.rows),
            "epochs_run": len(history.epochs),
            "stopped_early": history.stopped_early,
            "best_epoch": history.best_epoch,
            "monitor": f"clean and PGD-{MONITOR_STEPS} accuracy on {len(context.monitor[0])} held-out inputs",
        }
        checks = []
        if self.method == "fast":
            training["guard"] = {
                "metric": f"PGD-{MONITOR_STEPS} accuracy on {len(monitor.guard_x)} training samples",  # type: ignore[arg-type]
                "fired": monitor.fired is not None,
                "training_attack_accuracy_at_start": monitor.start_training_attack_accuracy,
                "fired_at": monitor.fired,
                "kept_epoch": history.best_epoch,
            }
            checks.append(_guard_check(monitor.fired, history.best_epoch))
        return Hardened(model=model.eval(), trained=True, training=training, checks=checks, baseline=baseline)


def _guard_check(fired: dict[str, Any] | None, kept: int | None) -> dict[str, Any]:
    """The report's check on catastrophic overfitting."""
    if fired is None:
        return {
            "name": "no_catastrophic_overfitting",
            "passed": True,
            "detail": "PGD accuracy on the training subset never collapsed during fast adversarial training",
        }
    return {
        "name": "no_catastrophic_overfitting",
        "passed": False,
        "detail": (
            f"the guard fired at epoch {fired['epoch']}: PGD accuracy on the training subset "
            f"{fired['guard_pgd_accuracy']:.1%} (best {fired['best_guard_pgd_accuracy']:.1%}) against "
            f"{fired['training_attack_accuracy']:.1%} under the training attack (up from "
            f"{fired['start_training_attack_accuracy']:.1%} before training: catastrophic "
            f"overfitting of FGSM training); training stopped, epoch {kept} kept. Try a smaller eps, "
            "more steps (method pgd) or a smaller learning rate"
        ),
    }
