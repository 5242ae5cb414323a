"""DeepFool (Moosavi-Dezfooli et al.): minimum-norm attack by repeatedly linearising the classifier."""

from typing import Any

import torch
from torch import Tensor, nn

from app.schemas.evasion import DeepFoolParams
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.norms import clamp_range, perturbation_norm, steepest_ascent

# Added to each step's length, as in the authors' reference code, so an iterate does not stop on the boundary.
STEP_MARGIN = 1e-4


class DeepFool(Attack):
    """DeepFool, untargeted and minimum-norm, in l2 or linf.

    Paper: Moosavi-Dezfooli, Fawzi and Frossard, "DeepFool: a simple and accurate method to fool
    deep neural networks", CVPR 2016; reference implementation LTS4/DeepFool (Python/deepfool.py),
    whose defaults are the spec's.

    Threat model: white-box (gradients of the logits w.r.t. the input), untargeted only (targeted
    is refused), unbounded: it searches for a small perturbation that changes the label. The
    evaluation runs it once with eps=inf and counts a sample as broken at eps only when that
    perturbation's norm is at most eps; with a finite eps, successes farther than eps fall back to
    the clean input.

    The candidate classes of a sample are its label and the candidates - 1 other classes with the
    highest clean logits. At each step, for every other candidate k, with f_k the logit gap
    Z_k - Z_y and w_k its input gradient, DeepFool picks the class l closest under the linear
    model, l = argmin_k |f_k| / ||w_k||_q (q the dual norm: 2 for l2, 1 for linf), and moves
    r = (|f_l| / ||w_l||_q + 1e-4) * u_l with u_l the unit steepest-ascent direction of w_l
    (w_l / ||w_l||_2 for l2, sign(w_l) for linf). As in the reference, the iterate is the clean
    input plus (1 + overshoot) times the accumulated steps, so each step moves the iterate by
    (1 + overshoot) * r; the iterate is clamped into the input range after every step, and a
    sample stops as soon as its predicted label is no longer y. Samples still correctly classified
    after `steps` steps are failures and come back unchanged. No random draws: the generator is
    unused.

    Parameters, from the spec (`DeepFoolParams`, which holds their defaults and limits and refuses
    targeted):
        norm: "l2" (the paper's main variant) or "linf" (the paper's p = inf variant).
        steps: maximum number of linearisation steps (max_iter).
        overshoot: the reference's overshoot.
        candidates: number of top classes considered, the label included (num_classes in the
            reference); capped at the model's number of classes.
    Keyword argument: input_range, (low, high), default (0.0, 1.0).
    Cost per step: one forward pass and candidates - 1 backward passes over the samples not yet
    fooled, plus two forward passes per run.
    """

    spec_type = DeepFoolParams

    def __init__(self, spec: DeepFoolParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Read the DeepFool budget from the spec."""
        super().__init__(spec, input_range=input_range)
        self.steps = spec.steps
        self.overshoot = spec.overshoot
        self.candidates = spec.candidates

    def params(self) -> dict[str, Any]:
        """Effective parameters, for the report."""
        return {
            **super().params(),
            "steps": self.steps,
            "overshoot": self.overshoot,
            "candidates": self.candidates,
        }

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Linearise and step until the label changes; returns x where it never did or lies beyond eps."""
        labels = labels.long()
        with torch.no_grad():
            logits = model(x)
            clean_predictions = logits.argmax(dim=1)
            count = min(self.candidates, logits.shape[1])
            others = logits.scatter(1, labels[:, None], -torch.inf).topk(count - 1, dim=1).indices
            classes = torch.cat([labels[:, None], others], dim=1)
        x_adv = x.clone()
        rows = (clean_predictions == labels).nonzero()[:, 0]
        current, classes = x[rows], classes[rows]
        for step in range(self.steps + 1):
            if rows.numel() == 0:
                break
            last = step == self.steps
            current = current.detach().requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                logits = model(current)
                gaps = logits.gather(1, classes[:, 1:]) - logits.gather(1, classes[:, :1])
            fooled = logits.detach().argmax(dim=1) != classes[:, 0]
            x_adv[rows[fooled]] = current.detach()[fooled]
            if last:
                break
            gradients = self._gap_gradients(gaps, current)
            keep = ~fooled
            rows, classes = rows[keep], classes[keep]
            if rows.numel() == 0:
                break
            with torch.no_grad():
                move = self._step(gaps.detach()[keep], gradients[keep])
                current = clamp_range(current.detach()[keep] + (1 + self.overshoot) * move, self.input_range)
        with torch.no_grad():
            predictions = model(x_adv).argmax(dim=1)
            if not len(x):
                return x_adv, predictions
            keep = (predictions != labels) & (perturbation_norm(x_adv - x, self.norm) <= eps)
            x_adv = torch.where(keep.reshape((-1,) + (1,) * (x.dim() - 1)), x_adv, x)
            predictions = torch.where(keep, predictions, clean_predictions)
        return x_adv, predictions

    @staticmethod
    def _gap_gradients(gaps: Tensor, current: Tensor) -> Tensor:
        """Input gradients of each logit gap, [B, K - 1, ...]: one backward pass per candidate class."""
        columns = []
        for k in range(gaps.shape[1]):
            last = k == gaps.shape[1] - 1
            (grad,) = torch.autograd.grad(gaps[:, k].sum(), current, retain_graph=not last)
            columns.append(grad)
        return torch.stack(columns, dim=1)

    def _step(self, gaps: Tensor, gradients: Tensor) -> Tensor:
        """The step to the closest linearised boundary: (|f_l| / ||w_l||_q + 1e-4) * u_l."""
        flat = gradients.flatten(2)
        dual = flat.abs().sum(dim=2) if self.norm == "linf" else flat.norm(p=2, dim=2)
        distance = torch.where(dual > 0, gaps.abs() / dual, torch.full_like(dual, torch.inf))
        closest = distance.argmin(dim=1)
        index = torch.arange(len(gaps), device=gaps.device)
        length = distance[index, closest]
        direction = steepest_ascent(gradients[index, closest], self.norm)
        length = torch.where(torch.isfinite(length), length + STEP_MARGIN, torch.zeros_like(length))
        return direction * length.reshape((-1,) + (1,) * (direction.dim() - 1))
