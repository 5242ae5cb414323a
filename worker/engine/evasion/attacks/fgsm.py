"""Fast Gradient Sign Method and its l2 variant (fast gradient method)."""

import torch
from torch import Tensor, nn

from app.schemas.evasion import FgsmParams
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.norms import project, steepest_ascent


class FGSM(Attack):
    """Fast Gradient Sign Method: one gradient step of size eps.

    Paper: Goodfellow, Shlens and Szegedy, "Explaining and Harnessing Adversarial Examples",
    ICLR 2015.

    Threat model: white-box (gradients of the cross-entropy loss w.r.t. the input), perturbation
    bounded by eps in the chosen norm, result clamped into the input range.

    Step: linf moves every coordinate by eps times the sign of the gradient; l2 moves eps along
    the l2-normalised gradient (the fast gradient method). Untargeted ascends the cross-entropy to
    the true label; targeted descends the cross-entropy to the target label.

    Parameters, from the spec (`FgsmParams`): norm ("linf" or "l2") and targeted.
    Keyword argument: input_range, (low, high), default (0.0, 1.0).
    eps is given per call to `run`.
    """

    spec_type = FgsmParams

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """One signed (linf) or normalised (l2) gradient step, projected into ball and range."""
        _, grad = self._objective_and_grad(model, x, labels)
        with torch.no_grad():
            x_adv = project(x, x + eps * steepest_ascent(grad, self.norm), eps, self.norm, self.input_range)
        _, predictions = self._objective_and_predictions(model, x_adv, labels)
        return x_adv, predictions
