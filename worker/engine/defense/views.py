"""What an attacker differentiates: views of a defended model for naive and adaptive attacks.

A view changes only the outputs an attack's loss is computed on, never the decision: each view's
argmax is the deployed model's argmax, and the evaluator measures every figure on the deployed model
anyway.
"""

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.evasion import PgdParams
from worker.engine.evasion.attacks.pgd import PGD

# Probabilities below this are clamped before the log in the naive softmax view (float32's smallest
# normal number): a saturated softmax then gives exactly zero gradient, as it does for an attacker
# who differentiates the deployed probabilities.
TINY_PROBABILITY = 1.1754944e-38


class SoftmaxOutput(nn.Module):
    """The deployed probabilities (softmax at T = 1), as log-probabilities computed naively in float32.

    This is the view of Papernot et al.'s own evaluation: an attacker who differentiates the model's
    output probabilities. With a saturated softmax its gradient vanishes.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """log(softmax(z)) through the probabilities, clamped at the smallest normal float."""
        probabilities = functional.softmax(self.model(x).float(), dim=1)
        return torch.log(probabilities.clamp_min(TINY_PROBABILITY))


class Tempered(nn.Module):
    """The logits divided by a temperature: cross-entropy on z / T undoes the distillation's scaling."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, float(temperature)

    def forward(self, x: Tensor) -> Tensor:
        """z / T."""
        return self.model(x) / self.temperature


def margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Carlini-Wagner margin: the largest other logit minus the true logit (positive = misclassified)."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(functional.one_hot(labels, logits.shape[1]).bool(), -torch.inf)
    return others.amax(dim=1) - true


class MarginPGD(PGD):
    """PGD on the Carlini-Wagner margin loss of the logits (Carlini and Wagner, S&P 2017, loss f_6).

    Threat model and parameters as PGD (Madry et al. 2018); untargeted only. The margin is invariant to
    the logits' scale up to a factor, so it does not saturate the way cross-entropy on a hard softmax does:
    the adaptive attack on defensive distillation.
    """

    name = "pgd_margin"

    def __init__(self, spec: PgdParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """As PGD (from a PGD spec); targeted is refused."""
        super().__init__(spec, input_range=input_range)
        if self.targeted:
            raise ValueError("pgd_margin is untargeted")

    def params(self) -> dict[str, Any]:
        """PGD's parameters with the margin loss."""
        return {**super().params(), "loss": "cw_margin"}

    def _objective_and_grad(self, model: nn.Module, x_adv: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The margin and its input gradient."""
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            objective = margin(model(x_adv), labels)
            (grad,) = torch.autograd.grad(objective.sum(), x_adv)
        return objective.detach(), grad

    @torch.no_grad()
    def _objective_and_predictions(
        self, model: nn.Module, x_adv: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The margin and the predicted labels."""
        logits = model(x_adv)
        return margin(logits, labels), logits.argmax(dim=1)
