"""Defensive distillation (Papernot et al. 2016), evaluated on its logits as Carlini and Wagner broke it."""

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.common import Norm
from app.schemas.defense import DistillationParams
from app.schemas.evasion import AttackParamsBase, PgdParams
from worker.engine.batching import batch_bounds
from worker.engine.defense.base import (
    Defense,
    DefenseContext,
    Hardened,
    Inspection,
    curve,
    train_baseline,
    training_recipe,
)
from worker.engine.defense.evaluation import AttackRun
from worker.engine.defense.monitor import EpochMonitor
from worker.engine.defense.views import MarginPGD, SoftmaxOutput, Tempered
from worker.engine.evasion.attacks.pgd import PGD
from worker.engine.training.fit import fit, soft_cross_entropy

# A sample's softmax counts as saturated when its top probability rounds to 1 in float32.
SATURATED = 1.0 - 2.0**-24
SATURATED_SHARE = 0.5
MARGIN_STEPS = 100
# The naive evaluation: what a gradient attacker who ignores the temperature runs (as in the paper's own
# evaluation): PGD with cross-entropy through the deployed softmax.
NAIVE_STEPS = 40
NAIVE_VIEW = "PGD cross-entropy on the deployed softmax (T = 1)"


class TemperatureLoss:
    """Cross-entropy of the logits divided by T to labels or label distributions (training at T)."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, model: nn.Module, x: Tensor, targets: Tensor, generator: torch.Generator) -> Tensor:
        """soft_cross_entropy(model(x) / T, targets)."""
        return soft_cross_entropy(model(x) / self.temperature, targets)


@torch.no_grad()
def soft_labels(model: nn.Module, x: np.ndarray, temperature: float, device: torch.device) -> np.ndarray:
    """The teacher's softmax at temperature T."""
    inputs = torch.as_tensor(x)
    chunks = [
        functional.softmax(model(inputs[a:b].to(device)).float() / temperature, dim=1).cpu()
        for a, b in batch_bounds(len(inputs), 512)
    ]
    return torch.cat(chunks).numpy()


class Distillation(Defense[DistillationParams]):
    """Defensive distillation.

    Paper: Papernot, McDaniel, Wu, Jha and Swami, "Distillation as a Defense to Adversarial Perturbations
    against Deep Neural Networks", IEEE S&P 2016; broken by Carlini and Wagner, "Towards Evaluating the
    Robustness of Neural Networks", S&P 2017 (attacks on the logits).

    The teacher is trained at temperature T on hard labels (teacher "train") or is the uploaded model
    (teacher "upload", its logits divided by T); the student (init "random" by default: the same
    architecture from scratch) is trained at T on the teacher's soft labels and deployed at T = 1, so its
    logits are about T times larger and its softmax saturates. The evaluation attacks the softmax naively
    (PGD cross-entropy through the deployed softmax, the gradient attack of the paper's era) and the logits
    adaptively: the evaluation's attacks on logits / T and PGD on the Carlini-Wagner margin. Threat model
    of the evaluation: the evaluation's norm and eps. A trained teacher starts from the student's init, so
    with init "random" and teacher "train" nothing of the uploaded weights is used (an architecture
    without weights distils from scratch: teacher first, then student, both with the job's recipe).

    Parameters: temperature T (default 100, in (0, 1000]); teacher ("train" default, or "upload");
    and the training recipe (init default "random", epochs, batch_size, optimizer, learning_rate, ...).
    """

    spec_type = DistillationParams

    def training_units(self, n_train: int) -> float:
        """Teacher and student epochs (and a plain baseline for a random init)."""
        trained = 1 + (self.spec.teacher == "train") + (self.spec.init == "random")
        return trained * self.spec.epochs * n_train + self.spec.epochs * 200

    def harden(self, context: DefenseContext) -> Hardened:
        """Train (or take) the teacher, label the training set at T, train the student at T."""
        x, y = context.training_set()
        recipe, loss = training_recipe(self.spec), TemperatureLoss(self.spec.temperature)
        baseline = train_baseline(context, recipe) if self.spec.init == "random" else None
        training: dict[str, Any] = {"temperature": self.spec.temperature, "teacher": self.spec.teacher}
        if self.spec.teacher == "train":
            teacher = context.fresh(self.spec.init)
            teacher_monitor = EpochMonitor(
                *context.monitor, budget=None, device=context.device, seed=context.seed
            )
            history = fit(
                teacher,
                x,
                y,
                recipe=recipe,
                seed=context.seed,
                device=context.device,
                loss=loss,
                on_epoch=teacher_monitor,
                progress=context.tracker,
                stage=f"teacher at T={self.spec.temperature:g}",
            )
            training["teacher_curve"] = curve(history, teacher_monitor.rows)
        else:
            teacher = context.uploaded()
        targets = soft_labels(teacher.eval(), x, self.spec.temperature, context.device)
        student = context.fresh(self.spec.init)
        monitor = EpochMonitor(
            *context.monitor, budget=None, device=context.device, seed=context.seed, tracker=context.tracker
        )
        history = fit(
            student,
            x,
            targets,
            recipe=recipe,
            seed=context.seed + 1,
            device=context.device,
            loss=loss,
            on_epoch=monitor,
            progress=context.tracker,
            stage=f"student at T={self.spec.temperature:g}",
        )
        training["curve"] = curve(history, monitor.rows)
        training["epochs_run"] = len(history.epochs)
        training["monitor"] = f"clean accuracy on {len(context.monitor[0])} held-out inputs after each epoch"
        return Hardened(model=student.eval(), trained=True, training=training, baseline=baseline)

    def inspect(self, final: nn.Module, x: np.ndarray, y: np.ndarray, context: DefenseContext) -> Inspection:
        """The deployed softmax's saturation on the evaluation set, and its check."""
        saturation = _saturation(final, x, context.device)
        return Inspection({"softmax_saturation": saturation}, [_saturation_check(saturation)])

    def runs(
        self, final: nn.Module, attacks: list[AttackParamsBase], context: DefenseContext
    ) -> list[AttackRun]:
        """Naive: PGD cross-entropy on the deployed softmax. Adaptive: the evaluation's attacks on logits / T,
        and margin PGD on the logits."""
        budgets = _budgets_by_norm(attacks)
        naive_specs = [PgdParams(name="pgd", norm=norm, eps=eps, steps=NAIVE_STEPS) for norm, eps in budgets]
        naive = [(PGD(spec, input_range=context.input_range), spec) for spec in naive_specs]
        # The margin attack is PGD with another loss: its spec is a PGD spec (the report names it pgd_margin).
        margin_specs = [
            PgdParams(name="pgd", norm=norm, eps=eps, steps=MARGIN_STEPS) for norm, eps in budgets
        ]
        margin = [(MarginPGD(spec, input_range=context.input_range), spec) for spec in margin_specs]
        return [
            AttackRun("naive", NAIVE_VIEW, SoftmaxOutput(final), [], extra=naive),
            AttackRun(
                "adaptive",
                f"the logits divided by T = {self.spec.temperature:g}",
                Tempered(final, self.spec.temperature),
                attacks,
                sanity_runs=True,
            ),
            AttackRun("adaptive", "the logits (Carlini-Wagner margin)", final, [], extra=margin),
        ]


def _budgets_by_norm(attacks: list[AttackParamsBase]) -> list[tuple[Norm, list[float]]]:
    """Every eps the evaluation's attacks ask for, per norm."""
    budgets: dict[Norm, set[float]] = {}
    for spec in attacks:
        budgets.setdefault(spec.norm, set()).update(spec.eps)
    return [(norm, sorted(eps)) for norm, eps in sorted(budgets.items()) if eps]


@torch.no_grad()
def _saturation(model: nn.Module, x: np.ndarray, device: torch.device) -> dict[str, Any]:
    """How often the deployed softmax is saturated (top probability 1 in float32) on held-out inputs."""
    inputs = torch.as_tensor(x)
    logits = torch.cat(
        [model(inputs[a:b].to(device)).float().cpu() for a, b in batch_bounds(len(inputs), 512)]
    )
    top = functional.softmax(logits, dim=1).amax(dim=1)
    ordered = logits.sort(dim=1, descending=True).values
    gap = ordered[:, 0] - ordered[:, 1]
    return {
        "saturated_share": float((top >= SATURATED).double().mean()),
        "median_logit_gap": float(gap.median()),
        "n_samples": len(inputs),
    }


def _saturation_check(saturation: dict[str, Any]) -> dict[str, Any]:
    """A check that fails when most deployed softmax outputs are saturated (gradients vanish)."""
    share = saturation["saturated_share"]
    passed = share < SATURATED_SHARE
    detail = (
        f"{share:.1%} of {saturation['n_samples']} evaluation samples have a top softmax probability of 1 "
        "in float32 "
        f"(median gap between the two largest logits {saturation['median_logit_gap']:.3g})"
    )
    if not passed:
        detail += (
            ": the softmax is saturated, so gradients of the probabilities vanish and attacks on them fail "
            "(gradient masking); the logits-based figures are the real ones"
        )
    return {"name": "softmax_not_saturated", "passed": passed, "detail": detail}
