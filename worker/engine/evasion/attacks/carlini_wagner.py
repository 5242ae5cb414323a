"""Carlini-Wagner L2: minimum-norm attack by Adam in tanh space with a binary search over the constant c."""

import math
from typing import Any

import torch
from torch import Tensor, nn

from app.schemas.evasion import CarliniWagnerParams
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.norms import clamp_range, perturbation_norm

# The reference scales inputs by this before arctanh so that pixels at the range bounds stay finite.
TANH_SHRINK = 0.999999
# Adam moments and epsilon as in TensorFlow's AdamOptimizer, which the reference uses.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
# The reference's upper bound on c: below NO_UPPER_BOUND a success has been seen and c is bisected.
C_UPPER_START = 1e10
NO_UPPER_BOUND = 1e9
# Abort early when the loss has not fallen below this share of its value at the previous checkpoint.
ABORT_RATIO = 0.9999


class CarliniWagnerL2(Attack):
    """Carlini-Wagner L2 attack (minimum-norm).

    Paper: Carlini and Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P
    2017; reference implementation carlini/nn_robust_attacks (l2_attack.py), whose defaults are
    the spec's.

    Threat model: white-box (gradients of the logits w.r.t. the input), l2 distance only (linf is
    refused), unbounded: it searches for the smallest successful perturbation. The evaluation runs
    it once with eps=inf and counts a sample as broken at eps only when that perturbation's l2 norm
    is at most eps; with a finite eps, successes farther than eps fall back to the clean input.

    Change of variables: x' = mid + half * tanh(w) with mid, half the centre and half-width of
    input_range, so every iterate lies inside the range; w starts at arctanh((x - mid) / half *
    0.999999) (the reference's guard). Per sample it minimises
    ||x' - x0||_2^2 + c * max(Z_y - max_{i != y} Z_i, -confidence) (untargeted) or
    ||x' - x0||_2^2 + c * max(max_{i != t} Z_i - Z_t, -confidence) (targeted, the paper's f6), Z
    the logits and x0 the clean input seen through the change of variables, with Adam
    (TensorFlow's update rule and moments, reset at every binary-search step, w restarted at the
    clean input). An iterate counts as adversarial when the attack holds with margin confidence;
    per sample the adversarial closest to x in l2 over all steps is kept. After each binary-search
    step, per sample: on success c becomes the midpoint of [lower, c]; on failure c becomes the
    lower bound and is multiplied by 10 until a first success, then bisected; with 10 or more
    binary-search steps the last one runs at the upper bound, as in the reference. No random draws:
    the generator is unused.

    Parameters, from the spec (`CarliniWagnerParams`, which holds their defaults and limits):
        norm: "l2" (the only supported norm).
        targeted: False or True.
        binary_search_steps: binary-search steps over c.
        steps: maximum Adam iterations per binary-search step.
        learning_rate: Adam learning rate.
        initial_const: first c.
        confidence: kappa, the required logit margin.
        abort_early: stop a sample's binary-search step when its loss has not fallen by 0.01% over
            steps // 10 iterations.
    Keyword argument: input_range, (low, high), default (0.0, 1.0).
    Deviations from the reference, both in the attack's favour or neutral: abort_early is decided
    per sample (the reference decides per batch, and runs batches of one by default), and the first
    checkpoint never aborts (the reference compares against 1e6, which aborts at once when c is
    large). Cost: at most binary_search_steps * steps forward+backward passes, plus two forward
    passes.
    """

    spec_type = CarliniWagnerParams

    def __init__(self, spec: CarliniWagnerParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Read the Carlini-Wagner budget from the spec."""
        super().__init__(spec, input_range=input_range)
        self.binary_search_steps = spec.binary_search_steps
        self.steps = spec.steps
        self.learning_rate = spec.learning_rate
        self.initial_const = spec.initial_const
        self.confidence = spec.confidence
        self.abort_early = spec.abort_early

    def params(self) -> dict[str, Any]:
        """Effective parameters, for the report."""
        return {
            **super().params(),
            "binary_search_steps": self.binary_search_steps,
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "initial_const": self.initial_const,
            "confidence": self.confidence,
            "abort_early": self.abort_early,
            "optimizer": "adam",
            "objective": "f6 logit margin",
        }

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Binary search over c; returns the smallest adversarial per sample (x where none, or beyond eps)."""
        low, high = self.input_range
        half, mid = (high - low) / 2, (high + low) / 2
        n, labels = len(x), labels.long()
        with torch.no_grad():
            clean_predictions = model(x).argmax(dim=1)
            w_clean = torch.atanh(((x - mid) / half).clamp(-1.0, 1.0) * TANH_SHRINK)
            x_start = torch.tanh(w_clean) * half + mid
        if n == 0:
            return x.clone(), clean_predictions
        const = torch.full((n,), self.initial_const, dtype=x.dtype, device=x.device)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, C_UPPER_START)
        best_distance = torch.full_like(const, math.inf)
        best_adv = x.clone()
        for outer in range(self.binary_search_steps):
            if self.binary_search_steps >= 10 and outer == self.binary_search_steps - 1:
                const = upper.clone()
            found = self._descend(model, x, x_start, w_clean, labels, const, best_distance, best_adv)
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            unbracketed = torch.where(found, const, const * 10)
            const = torch.where(upper < NO_UPPER_BOUND, (lower + upper) / 2, unbracketed)
        with torch.no_grad():
            x_adv = clamp_range(best_adv, self.input_range)
            predictions = model(x_adv).argmax(dim=1)
            hit = predictions == labels if self.targeted else predictions != labels
            keep = hit & (perturbation_norm(x_adv - x, "l2") <= eps)
            x_adv = torch.where(keep.reshape((-1,) + (1,) * (x.dim() - 1)), x_adv, x)
            predictions = torch.where(keep, predictions, clean_predictions)
        return x_adv, predictions

    def _descend(
        self,
        model: nn.Module,
        x: Tensor,
        x_start: Tensor,
        w_clean: Tensor,
        labels: Tensor,
        const: Tensor,
        best_distance: Tensor,
        best_adv: Tensor,
    ) -> Tensor:
        """One binary-search step at fixed c; updates the best in place and returns per-sample success."""
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        rows = torch.arange(len(x), device=x.device)  # samples still descending (not aborted early)
        modifier, first, second = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)
        previous = torch.full_like(const, math.inf)
        check_every = max(1, self.steps // 10)
        beta1, beta2 = ADAM_BETAS
        for iteration in range(self.steps):
            loss, logits, x_new, grad = self._loss_and_grad(
                model, modifier, w_clean[rows], x_start[rows], labels[rows], const[rows]
            )
            with torch.no_grad():
                if self.abort_early and iteration % check_every == 0:
                    going = loss <= previous * ABORT_RATIO
                    if not bool(going.all()):
                        kept = (t[going] for t in (rows, modifier, first, second, loss, logits, x_new, grad))
                        rows, modifier, first, second, loss, logits, x_new, grad = kept
                        if rows.numel() == 0:
                            break
                    previous = loss
                hit = self._hit_with_margin(logits, labels[rows])
                distance = perturbation_norm(x_new - x[rows], "l2")
                improved = hit & (distance < best_distance[rows])
                found[rows] = found[rows] | hit
                best_distance[rows] = torch.where(improved, distance, best_distance[rows])
                improved_view = improved.reshape((-1,) + (1,) * (x.dim() - 1))
                best_adv[rows] = torch.where(improved_view, x_new, best_adv[rows])
                first.mul_(beta1).add_(grad, alpha=1 - beta1)
                second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = iteration + 1
                rate = self.learning_rate * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                modifier = modifier - rate * first / (second.sqrt() + ADAM_EPSILON)
        return found

    def _loss_and_grad(
        self,
        model: nn.Module,
        modifier: Tensor,
        w_clean: Tensor,
        x_start: Tensor,
        labels: Tensor,
        const: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-sample loss, logits and iterate at w_clean + modifier, and the loss gradient for modifier."""
        low, high = self.input_range
        half, mid = (high - low) / 2, (high + low) / 2
        modifier = modifier.detach().requires_grad_(True)
        with torch.enable_grad():
            x_new = torch.tanh(modifier + w_clean) * half + mid
            logits = model(x_new)
            distance = (x_new - x_start).pow(2).flatten(1).sum(dim=1)
            real = logits.gather(1, labels[:, None])[:, 0]
            other = logits.scatter(1, labels[:, None], -math.inf).amax(dim=1)
            margin = other - real if self.targeted else real - other
            loss = const * (margin + self.confidence).clamp_min(0.0) + distance
            (grad,) = torch.autograd.grad(loss.sum(), modifier)
        return loss.detach(), logits.detach(), x_new.detach(), grad

    def _hit_with_margin(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The reference's success test: argmax with the label's logit moved by confidence against it."""
        if self.confidence:
            shift = -self.confidence if self.targeted else self.confidence
            logits = logits.scatter_add(1, labels[:, None], torch.full_like(logits[:, :1], shift))
        predictions = logits.argmax(dim=1)
        return predictions == labels if self.targeted else predictions != labels
