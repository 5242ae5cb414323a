"""Projected Gradient Descent (Madry et al.) in linf and l2, with random start and restarts."""

from typing import Any

import torch
from torch import Tensor, nn

from app.schemas.evasion import PgdParams
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.norms import project, random_in_ball, steepest_ascent

STEP_SIZE_RULE = "2.5 * eps / steps"


class PGD(Attack):
    """Projected Gradient Descent on the cross-entropy loss.

    Paper: Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018.

    Threat model: white-box (gradients of the cross-entropy w.r.t. the input), perturbation
    bounded by eps in linf or l2, every iterate clamped into the input range.

    Each step moves by step_size along the steepest-ascent direction of the norm (gradient sign
    for linf, l2-normalised gradient for l2), then projects onto the eps ball around the clean
    input and into the input range. Untargeted ascends the cross-entropy to the true label;
    targeted descends the cross-entropy to the target. The final iterate of each restart is kept.

    Parameters, from the spec (`PgdParams`, which holds their defaults and limits):
        norm: "linf" or "l2".
        targeted: False or True.
        steps: number of gradient steps.
        step_size: size of one step; None means 2.5 * eps / steps (the Madry et al. choice, enough
            to cross the ball from any start).
        random_start: start from a random point of the eps ball (linf: uniform in the cube; l2:
            uniform direction at a radius uniform in [0, eps]), clamped into the input range.
        restarts: restarts after the first only attack samples not yet successful; per sample the
            first successful restart is kept, otherwise the one with the highest objective
            (cross-entropy to the true label; minus cross-entropy to the target when targeted), so
            more restarts never make the attack weaker.
    Keyword argument: input_range, (low, high), default (0.0, 1.0).
    eps is given per call to `run`. Cost: steps forward+backward passes plus one forward pass per
    restart.
    """

    spec_type = PgdParams

    def __init__(self, spec: PgdParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Read the PGD budget from the spec."""
        super().__init__(spec, input_range=input_range)
        self.steps = spec.steps
        self.step_size = spec.step_size
        self.random_start = spec.random_start
        self.restarts = spec.restarts

    def params(self) -> dict[str, Any]:
        """Effective parameters; step_size None means the per-eps rule in step_size_rule."""
        return {
            **super().params(),
            "steps": self.steps,
            "step_size": self.step_size,
            "step_size_rule": None if self.step_size is not None else STEP_SIZE_RULE,
            "random_start": self.random_start,
            "restarts": self.restarts,
            "loss": "cross_entropy",
        }

    def params_at(self, eps: float) -> dict[str, Any]:
        """The step size in effect at eps."""
        return {"step_size": self.step_size_for(eps)}

    def step_size_for(self, eps: float) -> float:
        """The step size used at budget eps."""
        return self.step_size if self.step_size is not None else 2.5 * eps / self.steps

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Run the restarts, keeping per sample the first success or else the highest objective."""
        best_adv = self._descend(model, x, labels, eps=eps, generator=generator)
        best_objective, best_predictions = self._objective_and_predictions(model, best_adv, labels)
        best_success = self._hit(best_predictions, labels)
        for _ in range(1, self.restarts):
            active = (~best_success).nonzero()[:, 0]
            if active.numel() == 0:
                break
            x_active, labels_active = x[active], labels[active]
            x_adv = self._descend(model, x_active, labels_active, eps=eps, generator=generator)
            objective, predictions = self._objective_and_predictions(model, x_adv, labels_active)
            success = self._hit(predictions, labels_active)
            better = success | (objective > best_objective[active])
            chosen = active[better]
            best_adv[chosen] = x_adv[better]
            best_objective[chosen] = objective[better]
            best_predictions[chosen] = predictions[better]
            best_success[chosen] = success[better]
        return best_adv, best_predictions

    def _hit(self, predictions: Tensor, labels: Tensor) -> Tensor:
        """Success against the loss labels: away from the true label, or onto the target."""
        return predictions == labels if self.targeted else predictions != labels

    def _descend(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> Tensor:
        """One PGD run: optional random start, then `steps` projected steepest-ascent steps."""
        step_size = self.step_size_for(eps)
        with torch.no_grad():
            start = x + random_in_ball(x, eps, self.norm, generator) if self.random_start else x
            x_adv = project(x, start, eps, self.norm, self.input_range)
        for _ in range(self.steps):
            _, grad = self._objective_and_grad(model, x_adv, labels)
            with torch.no_grad():
                moved = x_adv + step_size * steepest_ascent(grad, self.norm)
                x_adv = project(x, moved, eps, self.norm, self.input_range)
        return x_adv
