"""Adversarial training: PGD (Madry et al.), TRADES (Zhang et al.) and fast FGSM (Wong et al.)."""

import math
from typing import Any

from app.schemas.defense import AdversarialTrainingParams
from worker.engine.defense.adversarial_losses import Budget, FastLoss, MadryLoss, TradesLoss
from worker.engine.defense.base import (
    Defense,
    DefenseContext,
    Hardened,
    check_budget,
    curve,
    train_baseline,
    training_recipe,
)
from worker.engine.defense.monitor import GUARD_METRIC, MONITOR_STEPS, EpochMonitor
from worker.engine.seeding import numpy_rng
from worker.engine.training.fit import fit

FAST_STEP = 1.25  # Wong et al.'s FGSM step, in units of eps


class AdversarialTraining(Defense[AdversarialTrainingParams]):
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

    spec_type = AdversarialTrainingParams

    def validate(self, sample_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """eps must fit the input range (l2: the diagonal of the input cube)."""
        eps = self.spec.eps
        if self.spec.norm == "linf":
            check_budget("eps", eps, input_range)
            return
        limit = (input_range[1] - input_range[0]) * math.sqrt(math.prod(sample_shape))
        if not 0 < eps <= limit:
            raise ValueError(
                f"l2 eps must lie in (0, {limit:.4g}] for inputs of shape {list(sample_shape)}: {eps}"
            )

    def budget(self, input_range: tuple[float, float]) -> Budget:
        """The inner maximisation's budget."""
        spec = self.spec
        if spec.method == "fast":
            step = spec.step_size if spec.step_size is not None else FAST_STEP * spec.eps
            return Budget(spec.eps, spec.norm, 1, step, True, input_range)
        step = spec.step_size if spec.step_size is not None else 2.5 * spec.eps / spec.steps
        return Budget(spec.eps, spec.norm, spec.steps, step, spec.random_start, input_range)

    def passes_per_sample(self) -> int:
        """Forward-backward passes per trained sample and epoch."""
        if self.spec.method == "fast":
            return 2
        return self.spec.steps + (2 if self.spec.method == "trades" or self.spec.clean_weight > 0 else 1)

    def training_units(self, n_train: int) -> float:
        """Epochs x samples x passes, plus the baseline of a random init and the monitoring."""
        units = self.spec.epochs * n_train * self.passes_per_sample()
        if self.spec.init == "random":
            units += self.spec.epochs * n_train
        guard = self.spec.guard_samples if self.spec.method == "fast" else 0
        return units + self.spec.epochs * (200 + guard) * (MONITOR_STEPS + 2)

    def harden(self, context: DefenseContext) -> Hardened:
        """Train with the method's loss through the fit loop, measuring curves (and the guard) per epoch."""
        x, y = context.training_set()
        recipe = training_recipe(self.spec)
        budget = self.budget(context.input_range)
        loss: Any
        if self.spec.method == "pgd":
            loss = MadryLoss(budget, self.spec.clean_weight)
        elif self.spec.method == "trades":
            loss = TradesLoss(budget, self.spec.beta)
        else:
            loss = FastLoss(budget)
        baseline = train_baseline(context, recipe) if self.spec.init == "random" else None
        monitor = EpochMonitor(
            *context.monitor, budget=budget, device=context.device, seed=context.seed, tracker=context.tracker
        )
        if self.spec.method == "fast":
            chosen = numpy_rng(context.seed, 0x6A).choice(
                len(x), min(self.spec.guard_samples, len(x)), replace=False
            )
            monitor.guard_x, monitor.guard_y = x[chosen], y[chosen]
        model = context.fresh(self.spec.init)
        if self.spec.method == "fast":
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
            keep_best=GUARD_METRIC if self.spec.method == "fast" else None,
            progress=context.tracker,
            units_per_sample=self.passes_per_sample(),
            stage=f"adversarial training ({self.spec.method})",
        )
        training: dict[str, Any] = {
            "method": self.spec.method,
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
        if self.spec.method == "fast":
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
