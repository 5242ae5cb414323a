"""Fast Adaptive Boundary attack (Croce & Hein, ICML 2020): minimum-norm adversarials in linf and l2."""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from app.schemas.evasion import FabParams
from worker.engine.evasion.attacks.apgd import random_on_sphere
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.dlr import SuccessTest, classified_as, misclassified
from worker.engine.evasion.attacks.fab_projection import project_onto_hyperplane_box
from worker.engine.evasion.attacks.norms import Norm, clamp_range, perturbation_norm

# The reference's default eps, used for the random-restart radius when no eps is given (scaled by the
# width of the input range).
DEFAULT_RESTART_EPS: dict[str, float] = {"linf": 0.3, "l2": 1.0}

# (x1, rows) -> (f, w): the value [B] and input gradient [B, D] of the linearised boundary function.
Linearise = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class Linearizer:
    """First-order models of the decision boundary at the current iterates (one forward pass each)."""

    def __init__(self, model: nn.Module, norm: Norm) -> None:
        """Remember the model and the norm whose dual measures distances to the boundaries."""
        self.model, self.norm = model, norm

    def closest(self, y: Tensor) -> Linearise:
        """Untargeted FAB: of the boundaries z_k - z_y = 0, the one closest in the linear model."""

        def linearise(x1: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
            """Value and gradient of z_k - z_y for the k minimising |z_k - z_y| / ||grad||_dual.

            One forward pass and one backward pass per class (the Jacobian), keeping only the
            running closest boundary so memory stays at one input gradient per sample.
            """
            labels = y[rows]
            x_in = x1.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(x_in)
            z = logits.detach()
            n, classes = z.shape
            index = torch.arange(n, device=z.device)
            gaps = z - z[index, labels][:, None]
            best = torch.full((n,), torch.inf, device=z.device, dtype=z.dtype)
            value, grad = torch.zeros_like(best), x1.new_zeros(n, x1[0].numel())
            eye = torch.eye(classes, device=z.device, dtype=z.dtype)
            for k in range(classes):
                outputs = eye[k] - eye[labels]  # the gradient of z_k - z_y, per sample
                (g,) = torch.autograd.grad(logits, x_in, outputs, retain_graph=k < classes - 1)
                g = g.reshape(n, -1)
                dual = g.abs().sum(dim=1) if self.norm == "linf" else g.norm(dim=1)
                dist = torch.where(labels == k, torch.inf, gaps[:, k].abs() / (dual + 1e-12))
                better = dist < best
                best = torch.where(better, dist, best)
                value = torch.where(better, gaps[:, k], value)
                grad = torch.where(better[:, None], g, grad)
            return value, grad

        return linearise

    def pair(self, targets: Tensor, leave: Tensor | None) -> Linearise:
        """FAB-T: the boundary z_t - z_l = 0 between the target and class l.

        l is the given label (the true class, as FAB-T in AutoAttack) or, with leave None, the
        strongest class other than the target at the current iterate (a targeted attack).
        """

        def linearise(x1: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
            """Value and gradient of z_t - z_l."""
            t = targets[rows][:, None]
            x_in = x1.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(x_in)
                if leave is None:
                    others = logits.detach().scatter(1, t, -torch.inf)
                    other = others.argmax(dim=1, keepdim=True)
                else:
                    other = leave[rows][:, None]
                margin = (logits.gather(1, t) - logits.gather(1, other))[:, 0]
                (grad,) = torch.autograd.grad(margin.sum(), x_in)
            return margin.detach(), grad.reshape(len(x1), -1)

        return linearise


def fab_search(
    model: nn.Module,
    x: Tensor,
    start: Tensor,
    linearise: Linearise,
    hit: SuccessTest,
    *,
    norm: Norm,
    steps: int,
    alpha_max: float,
    eta: float,
    beta: float,
    input_range: tuple[float, float],
    stop_below: float = -1.0,
    shrink: bool = False,
    groups: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One FAB run from start; returns per sample the smallest adversarial found and its norm (inf: none).

    Stops early once every sample has an adversarial of norm at most stop_below. With shrink, a
    sample leaves the batch as soon as it has one (each sample's iterates depend on it alone, so the
    others are unchanged; the one leaving keeps an adversarial within stop_below, perhaps not the
    smallest the full run would reach: AutoAttack's use, where only "within eps" counts).
    groups (one id per row, e.g. the sample of a (sample, target) pair) makes rows count as done
    together: a row is done once any row of its group has an adversarial within stop_below.
    """
    n, low, high = len(x), *input_range
    view = (-1,) + (1,) * (x.dim() - 1)
    rows = torch.arange(n, device=x.device)
    best, best_norm = x.clone(), torch.full((n,), torch.inf, device=x.device, dtype=x.dtype)
    x1, x0 = start, x
    for _ in range(steps):
        m = len(rows)
        value, w = linearise(x1, rows)
        with torch.no_grad():
            flat0, flat1 = x0.reshape(m, -1), x1.reshape(m, -1)
            offsets = torch.cat((value, value + (w * (flat0 - flat1)).sum(dim=1)))
            moves = project_onto_hyperplane_box(
                torch.cat((flat1, flat0)), torch.cat((w, w)), offsets, low=low, high=high, norm=norm
            )
            sizes = perturbation_norm(moves, norm).clamp_min(1e-8)
            alpha = (sizes[:m] / (sizes[:m] + sizes[m:])).clamp(0.0, alpha_max).reshape(m, 1)
            mixed = (flat1 + eta * moves[:m]) * (1.0 - alpha) + (flat0 + eta * moves[m:]) * alpha
            x1 = clamp_range(mixed.reshape(x0.shape), input_range)
            adversarial = hit(model(x1), rows)
            size = perturbation_norm(x1 - x0, norm)
            better = adversarial & (size < best_norm[rows])
            best[rows[better]], best_norm[rows[better]] = x1[better], size[better]
            x1 = torch.where(adversarial.reshape(view), x0 + (x1 - x0) * beta, x1)
            done = best_norm[rows] <= stop_below
            if groups is not None and bool(done.any()):
                done = torch.isin(groups[rows], groups[rows][done])
            if bool(done.all()):
                break
            if shrink and bool(done.any()):
                rows, x1, x0 = rows[~done], x1[~done], x0[~done]
    return best, best_norm


def fab_restarts(
    model: nn.Module,
    x: Tensor,
    linearise: Linearise,
    hit: SuccessTest,
    *,
    eps: float,
    restart_radius: float,
    restarts: int,
    generator: torch.Generator,
    **search: Any,
) -> tuple[Tensor, Tensor]:
    """FAB with restarts; returns per sample the smallest adversarial found (x if none) and its norm.

    The first run starts at x, later ones at a random point on the sphere of radius
    min(best norm so far, restart_radius) / 2. With finite eps (AutoAttack's use) later runs attack
    only the samples without an adversarial within eps; with eps inf every sample is restarted.
    """
    with torch.no_grad():
        at_start = hit(model(x), torch.arange(len(x), device=x.device))
    best = x.clone()
    best_norm = torch.where(at_start, 0.0, torch.inf).to(x.dtype)
    norm, input_range = search["norm"], search["input_range"]
    groups: Tensor | None = search.pop("groups", None)
    for restart in range(restarts):
        todo = ~at_start & ((best_norm > eps) | math.isinf(eps))
        active = todo.nonzero()[:, 0]
        if not active.numel():
            break
        x_run = x[active]
        start = x_run
        if restart:
            radius = best_norm[active].clamp(max=restart_radius) * 0.5
            start = clamp_range(x_run + random_on_sphere(x_run, radius, norm, generator), input_range)
        found, size = fab_search(
            model, x_run, start,
            lambda x1, rows, a=active: linearise(x1, a[rows]),
            lambda logits, rows, a=active: hit(logits, a[rows]),
            stop_below=eps if math.isfinite(eps) else -1.0,
            groups=None if groups is None else groups[active], **search,
        )  # fmt: skip
        better = size < best_norm[active]
        best[active[better]], best_norm[active[better]] = found[better], size[better]
    return best, best_norm


class FAB(Attack):
    """Fast Adaptive Boundary attack: the smallest linf or l2 perturbation that changes the prediction.

    Paper: Croce and Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive Boundary
    Attack", ICML 2020 (reference implementation: fra31/auto-attack, fab_base.py).

    Threat model: white-box (input gradients of the logits); minimises the linf or l2 norm of the
    perturbation; every iterate inside the input range.

    Each step linearises the classifier at the iterate x1 and picks a boundary: untargeted, the
    boundary z_k = z_y closest in the linear model (distance |z_k - z_y| / ||grad(z_k - z_y)||_dual);
    targeted (the FAB-T linearisation), the boundary between the target and the strongest other
    class. It projects both x1 and the clean x onto that hyperplane inside the input box (exact
    minimum-norm projections, see fab_projection), giving moves d1 and d0, and sets
    x1 = clamp((x1 + eta * d1) * (1 - a) + (x + eta * d0) * a) with a = min(|d1| / (|d1| + |d0|),
    alpha_max). When x1 is adversarial it is recorded if smaller than the best so far and pulled
    back to x + beta * (x1 - x).

    Minimum-norm attack: the evaluation runs it with eps=inf and it returns per sample its smallest
    adversarial (x where it found none); restarts then begin at random points on the sphere of
    radius min(best norm so far, restart_eps) / 2. Run with a finite eps it behaves as in
    AutoAttack: restarts use radius eps / 2 on the samples not yet broken within eps, and only
    adversarials within eps are returned (x otherwise).

    Parameters, from the spec (`FabParams`, which holds their defaults and limits):
        norm: "linf" or "l2".
        targeted: False or True (success means the prediction is the target).
        steps: iterations per run.
        restarts: the first run starts at x; later ones at random points.
        alpha_max: largest weight of the step towards the clean input's projection.
        eta: overshoot of the projections.
        beta: backward step towards x after an adversarial iterate.
        restart_eps: restart radius cap when run with eps=inf; None means the reference's default
            eps (0.3 linf, 1.0 l2, times the width of the input range).
    Keyword argument: input_range, (low, high), default (0.0, 1.0).
    Cost per step: one forward and backward pass (targeted) or one forward pass and one backward
    pass per class (untargeted), plus one forward pass.
    """

    spec_type = FabParams

    def __init__(self, spec: FabParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Read the FAB budget from the spec."""
        super().__init__(spec, input_range=input_range)
        self.steps, self.restarts = spec.steps, spec.restarts
        self.alpha_max, self.eta, self.beta = spec.alpha_max, spec.eta, spec.beta
        self.restart_eps = spec.restart_eps

    def params(self) -> dict[str, Any]:
        """Effective parameters with the restart radius resolved."""
        return {
            **super().params(),
            "steps": self.steps,
            "restarts": self.restarts,
            "alpha_max": self.alpha_max,
            "eta": self.eta,
            "beta": self.beta,
            "restart_eps": self.restart_radius(math.inf),
        }

    def restart_radius(self, eps: float) -> float:
        """Cap of the random-restart radius at eps (eps itself when finite)."""
        if math.isfinite(eps):
            return eps
        if self.restart_eps is not None:
            return self.restart_eps
        return DEFAULT_RESTART_EPS[self.norm] * (self.input_range[1] - self.input_range[0])

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Smallest adversarial per sample (eps inf), or adversarials within a finite eps."""
        linearizer = Linearizer(model, self.norm)
        if self.targeted:
            linearise, hit = linearizer.pair(labels, None), classified_as(labels)
        else:
            linearise, hit = linearizer.closest(labels), misclassified(labels)
        best, best_norm = fab_restarts(
            model, x, linearise, hit, eps=eps, restart_radius=self.restart_radius(eps),
            restarts=self.restarts, generator=generator, norm=self.norm, steps=self.steps,
            alpha_max=self.alpha_max, eta=self.eta, beta=self.beta, input_range=self.input_range,
        )  # fmt: skip
        if math.isfinite(eps):
            best = torch.where((best_norm <= eps).reshape((-1,) + (1,) * (x.dim() - 1)), best, x)
        with torch.no_grad():
            predictions = model(best).argmax(dim=1)
        return best, predictions
