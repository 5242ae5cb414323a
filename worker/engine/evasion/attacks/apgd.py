"""Auto-PGD (Croce & Hein, ICML 2020): PGD with momentum and a budget-aware step-size schedule."""

from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Self

import torch
from torch import Tensor, nn

from app.schemas.evasion import ApgdParams
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.dlr import (
    Objective,
    SuccessTest,
    ce_objective,
    classified_as,
    dlr_objective,
    misclassified,
    targeted_ce_objective,
    targeted_dlr_objective,
)
from worker.engine.evasion.attacks.early_stop import at_fixed_point
from worker.engine.evasion.attacks.norms import Norm, perturbation_norm, project, steepest_ascent

ApgdLoss = Literal["ce", "dlr"]
MOMENTUM = 0.75  # alpha of the paper: weight of the new step against the previous one
INITIAL_STEP = 2.0  # initial step size, in units of eps
# Checkpoints p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (fractions of steps).
FIRST_WINDOW, WINDOW_DECAY, MIN_WINDOW = 0.22, 0.03, 0.06


def random_on_sphere(like: Tensor, radius: Tensor | float, norm: Norm, generator: torch.Generator) -> Tensor:
    """Random perturbations of norm exactly radius (per sample), as in the reference starts.

    linf: a uniform draw from the cube rescaled so its largest coordinate is radius; l2: a Gaussian
    direction scaled to radius.
    """
    kwargs: dict[str, Any] = {"generator": generator, "device": like.device, "dtype": like.dtype}
    draw = (
        torch.rand(like.shape, **kwargs) * 2.0 - 1.0 if norm == "linf" else torch.randn(like.shape, **kwargs)
    )
    size = perturbation_norm(draw, norm).clamp_min(1e-12)
    scale = torch.as_tensor(radius, device=like.device, dtype=like.dtype) / size
    return draw * scale.reshape((-1,) + (1,) * (like.dim() - 1))


def checkpoints(steps: int) -> list[int]:
    """Iterations after which APGD checks whether to halve the step size."""
    window, done, marks = max(int(FIRST_WINDOW * steps), 1), 0, []
    while done + window <= steps:
        done += window
        marks.append(done)
        window = max(window - max(int(WINDOW_DECAY * steps), 1), max(int(MIN_WINDOW * steps), 1))
    return marks


@dataclass
class _State:
    """Per-sample search state of the samples still being attacked."""

    rows: Tensor
    x: Tensor
    x_adv: Tensor
    x_prev: Tensor
    grad: Tensor
    x_best: Tensor
    grad_best: Tensor
    loss_best: Tensor
    loss_best_last: Tensor
    reduced_last: Tensor
    step: Tensor
    history: Tensor  # [B, steps + 1]: objective at the start and after each step
    adv_found: Tensor
    success: Tensor

    def select(self, keep: Tensor) -> Self:
        """The state restricted to the samples in keep."""
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self)})


def _objective_and_grad(
    model: nn.Module, x_adv: Tensor, objective: Objective, rows: Tensor, eot_iter: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Objective and logits (last draw) and the input gradient averaged over eot_iter draws."""
    grad = torch.zeros_like(x_adv)
    for _ in range(eot_iter):
        x_in = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_in)
            value = objective(logits, rows)
            (draw,) = torch.autograd.grad(value.sum(), x_in)
        grad += draw
    return value.detach(), logits.detach(), grad / eot_iter


def _with_group(marked: Tensor, groups: Tensor) -> Tensor:
    """Rows whose group has a marked row."""
    return torch.isin(groups, groups[marked])


def _emit(out: Tensor, out_success: Tensor, out_loss: Tensor, s: _State) -> None:
    """Write finished samples: their adversarial where they succeeded, else their best point."""
    view = (-1,) + (1,) * (out.dim() - 1)
    out[s.rows] = torch.where(s.success.reshape(view), s.adv_found, s.x_best)
    out_success[s.rows], out_loss[s.rows] = s.success, s.loss_best


def apgd_search(
    model: nn.Module,
    x: Tensor,
    objective: Objective,
    hit: SuccessTest,
    *,
    eps: float,
    norm: Norm,
    steps: int,
    rho: float,
    eot_iter: int,
    input_range: tuple[float, float],
    generator: torch.Generator,
    stop_when_stuck: bool = False,
    stats: dict[str, int] | None = None,
    init: Tensor | None = None,
    groups: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One APGD run from a random start; returns (x_out, success, best objective) per sample.

    x_out is the last successful iterate where the attack succeeded and the highest-objective
    iterate elsewhere. With eot_iter 1 (a deterministic model) a sample stops being attacked at its
    first success; with EOT it keeps going, as in the reference, so its adversarial is reinforced.
    With stop_when_stuck (linf, eot_iter 1) a sample also leaves at an exact fixed point of the
    iteration (see `early_stop.at_fixed_point`): every later iterate would be the same point.
    stats, when given, counts the samples that left early that way under "stuck".
    init, when given, is the random start's perturbation per sample (drawn by the caller, see
    `random_on_sphere`) instead of a draw from generator. groups, when given, ties rows together
    (one id per row, e.g. the sample of a (sample, target) pair): once one row of a group succeeds,
    every row of the group leaves (the others unsuccessful, at their best point).
    """
    n, view = len(x), (-1,) + (1,) * (x.dim() - 1)
    out, out_success, out_loss = x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device), x.new_zeros(n)
    rows = torch.arange(n, device=x.device)
    with torch.no_grad():
        offset = random_on_sphere(x, eps, norm, generator) if init is None else init
        start = project(x, x + offset, eps, norm, input_range)
    loss, logits, grad = _objective_and_grad(model, start, objective, rows, eot_iter)
    history = x.new_zeros(n, steps + 1)
    history[:, 0] = loss
    s = _State(
        rows=rows, x=x, x_adv=start, x_prev=start, grad=grad, x_best=start, grad_best=grad,
        loss_best=loss, loss_best_last=loss, reduced_last=torch.ones_like(loss, dtype=torch.bool),
        step=torch.full_like(loss, INITIAL_STEP * eps), history=history, adv_found=start,
        success=hit(logits, rows),
    )  # fmt: skip
    drop_succeeded = eot_iter == 1
    drop_stuck = stop_when_stuck and drop_succeeded and norm == "linf"
    window, since_check = max(int(FIRST_WINDOW * steps), 1), 0
    decay, min_window = max(int(WINDOW_DECAY * steps), 1), max(int(MIN_WINDOW * steps), 1)
    for i in range(steps + 1):
        if drop_succeeded and bool(s.success.any()):
            leaving = s.success if groups is None else _with_group(s.success, groups[s.rows])
            _emit(out, out_success, out_loss, s.select(leaving))
            s = s.select(~leaving)
        if i == steps or not len(s.rows):
            break
        with torch.no_grad():
            weight = MOMENTUM if i > 0 else 1.0
            stepped = project(
                s.x, s.x_adv + s.step.reshape(view) * steepest_ascent(s.grad, norm), eps, norm, input_range
            )
            moved = s.x_adv + weight * (stepped - s.x_adv) + (1.0 - weight) * (s.x_adv - s.x_prev)
            s.x_prev, s.x_adv = s.x_adv, project(s.x, moved, eps, norm, input_range)
        loss, logits, s.grad = _objective_and_grad(model, s.x_adv, objective, s.rows, eot_iter)
        with torch.no_grad():
            succeeded = hit(logits, s.rows)
            s.adv_found = torch.where(succeeded.reshape(view), s.x_adv, s.adv_found)
            s.success = s.success | succeeded
            s.history[:, i + 1] = loss
            improved = loss > s.loss_best
            s.x_best = torch.where(improved.reshape(view), s.x_adv, s.x_best)
            s.grad_best = torch.where(improved.reshape(view), s.grad, s.grad_best)
            s.loss_best = torch.where(improved, loss, s.loss_best)
            since_check += 1
            if since_check == window:
                recent = s.history[:, i + 2 - window : i + 2] > s.history[:, i + 1 - window : i + 1]
                oscillating = recent.sum(dim=1) <= window * rho
                stalled = ~s.reduced_last & (s.loss_best_last >= s.loss_best)
                reduce = oscillating | stalled
                s.reduced_last, s.loss_best_last = reduce, s.loss_best.clone()
                s.step = torch.where(reduce, s.step / 2.0, s.step)
                s.x_adv = torch.where(reduce.reshape(view), s.x_best, s.x_adv)
                s.grad = torch.where(reduce.reshape(view), s.grad_best, s.grad)
                since_check, window = 0, max(window - decay, min_window)
            if drop_stuck:
                stuck = (
                    at_fixed_point(
                        s.x, s.x_adv, s.x_prev, s.x_best, s.grad, s.grad_best, s.step, eps, input_range
                    )
                    & ~s.success
                )
                if bool(stuck.any()):
                    _emit(out, out_success, out_loss, s.select(stuck))
                    s = s.select(~stuck)
                    if stats is not None:
                        stats["stuck"] = stats.get("stuck", 0) + int(stuck.sum())
    _emit(out, out_success, out_loss, s)
    return out, out_success, out_loss


class APGD(Attack):
    """Auto-PGD on the cross-entropy or the DLR loss.

    Paper: Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020 (reference implementation: fra31/auto-attack).

    Threat model: white-box (input gradients of the loss), perturbation bounded by eps in linf or
    l2, every iterate inside the eps ball and the input range.

    Each run starts from a random point on the eps sphere (linf: a uniform cube draw rescaled to
    linf norm eps; l2: a Gaussian direction of l2 norm eps), clamped into the range, with step size
    2 * eps. A step moves along the steepest-ascent direction (gradient sign for linf, normalised
    gradient for l2), projects, and mixes with the previous move using momentum 0.75 (none on the
    first step), then projects again. At the checkpoints p_j * steps (p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)) the step size of a sample is halved, and it
    restarts from its highest-loss point with that point's gradient, if the loss increased in at
    most rho of the steps since the last checkpoint (counting the step from the start point; the
    threshold is inclusive, as in the reference), or if the step size was not halved at the last
    checkpoint and the best loss did not improve since. Untargeted attacks ascend the loss to the true
    label; targeted ones ascend minus the cross-entropy to the target ("ce") or the targeted DLR
    loss -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) ("dlr"), where y is the clean prediction
    (the true label on the clean-correct samples the evaluation attacks).

    Parameters, from the spec (`ApgdParams`, which holds their defaults and limits):
        norm: "linf" or "l2".
        targeted: False or True (targeted APGD uses the DLR loss).
        loss: "ce" or "dlr" (the Difference of Logits Ratio; needs at least 3 classes, 4 when
            targeted).
        steps: iterations per run (the paper's N_iter).
        restarts: restarts after the first run only on samples not yet successful; a sample keeps
            its successful point, or else the highest-loss point over the runs.
        rho: checkpoint threshold.
        eot_iter: gradients averaged per step (Expectation over Transformation, for randomised
            models).
    Keyword argument: input_range, (low, high), default (0.0, 1.0).
    eps is given per call to `run`. Cost: restarts * (steps + 1) * eot_iter forward+backward passes
    at most, plus one forward pass (predictions); a sample stops at its first success when eot_iter
    is 1.
    """

    spec_type = ApgdParams

    def __init__(self, spec: ApgdParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Read the APGD budget from the spec."""
        super().__init__(spec, input_range=input_range)
        self.loss: ApgdLoss = spec.loss
        self.steps, self.restarts, self.eot_iter = spec.steps, spec.restarts, spec.eot_iter
        self.rho = spec.rho

    def params(self) -> dict[str, Any]:
        """Effective parameters, including the fixed constants of the method."""
        return {
            **super().params(),
            "loss": self.loss,
            "steps": self.steps,
            "restarts": self.restarts,
            "rho": self.rho,
            "eot_iter": self.eot_iter,
            "momentum": MOMENTUM,
            "initial_step_size_rule": f"{INITIAL_STEP:g} * eps",
            "checkpoints": checkpoints(self.steps),
        }

    def params_at(self, eps: float) -> dict[str, Any]:
        """The initial step size at eps."""
        return {"initial_step_size": INITIAL_STEP * eps}

    def criteria(self, model: nn.Module, x: Tensor, labels: Tensor) -> tuple[Objective, SuccessTest]:
        """The objective to ascend and the success test for labels (true labels or targets)."""
        if not self.targeted:
            objective = ce_objective(labels) if self.loss == "ce" else dlr_objective(labels)
            return objective, misclassified(labels)
        if self.loss == "ce":
            return targeted_ce_objective(labels), classified_as(labels)
        with torch.no_grad():
            clean_prediction = model(x).argmax(dim=1)
        return targeted_dlr_objective(clean_prediction, labels), classified_as(labels)

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Run the restarts on the samples not yet successful; keep successes or the best loss."""
        objective, hit = self.criteria(model, x, labels)
        out, success = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        best = torch.full((len(x),), -torch.inf, device=x.device, dtype=x.dtype)
        for _ in range(self.restarts):
            active = (~success).nonzero()[:, 0]
            if not active.numel():
                break
            x_run, succeeded, value = apgd_search(
                model, x[active],
                lambda logits, rows, a=active: objective(logits, a[rows]),
                lambda logits, rows, a=active: hit(logits, a[rows]),
                eps=eps, norm=self.norm, steps=self.steps, rho=self.rho, eot_iter=self.eot_iter,
                input_range=self.input_range, generator=generator,
            )  # fmt: skip
            better = succeeded | (value > best[active])
            chosen = active[better]
            out[chosen], best[chosen], success[chosen] = x_run[better], value[better], succeeded[better]
        with torch.no_grad():
            predictions = model(out).argmax(dim=1)
        return out, predictions
