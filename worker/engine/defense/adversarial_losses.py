"""Batch losses of adversarial training (PGD after Madry et al., TRADES, fast FGSM) for the fit loop.

Each loss is a callable (model in train mode, inputs, labels, generator) -> scalar, as
`worker.engine.training.fit` expects. Adversarial examples are crafted with the model in eval mode
(batch statistics and dropout frozen, as the reference implementations do) and only the input
gradient is computed while crafting.
"""

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

from worker.engine.evasion.attacks.norms import Norm, project, random_in_ball, steepest_ascent

# TRADES starts its inner maximisation this close to x (Zhang et al.'s reference: 0.001 * N(0, 1)).
TRADES_START = 1e-3


def _input_gradient(model: nn.Module, x: Tensor, objective: "Objective") -> Tensor:
    """Gradient of the summed objective w.r.t. the input only."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(objective(model(x)).sum(), x)
    return grad


class Objective:
    """A per-sample objective of the logits that the inner maximisation ascends."""

    def __call__(self, logits: Tensor) -> Tensor:  # pragma: no cover - interface
        """Per-sample values."""
        raise NotImplementedError


class CrossEntropy(Objective):
    """Cross-entropy to the labels."""

    def __init__(self, y: Tensor) -> None:
        self.y = y

    def __call__(self, logits: Tensor) -> Tensor:
        """Per-sample cross-entropy."""
        return functional.cross_entropy(logits, self.y, reduction="none")


class KlToClean(Objective):
    """KL divergence of the prediction from the (fixed) clean prediction, TRADES' inner objective."""

    def __init__(self, clean_log_probs: Tensor) -> None:
        self.clean = clean_log_probs.detach()

    def __call__(self, logits: Tensor) -> Tensor:
        """Per-sample KL(clean || adversarial)."""
        log_probs = functional.log_softmax(logits, dim=1)
        return (self.clean.exp() * (self.clean - log_probs)).sum(dim=1)


@dataclass(frozen=True)
class Budget:
    """The threat model and inner-maximisation budget of adversarial training."""

    eps: float
    norm: Norm
    steps: int
    step_size: float
    random_start: bool
    input_range: tuple[float, float]


def pgd_perturb(
    model: nn.Module,
    x: Tensor,
    objective: Objective,
    budget: Budget,
    generator: torch.Generator,
    start: Tensor | None = None,
) -> Tensor:
    """Projected steepest ascent of the objective inside the eps ball and the input range."""
    eps, norm, low_high = budget.eps, budget.norm, budget.input_range
    with torch.no_grad():
        if start is None:
            start = x + random_in_ball(x, eps, norm, generator) if budget.random_start else x
        x_adv = project(x, start, eps, norm, low_high)
    for _ in range(budget.steps):
        grad = _input_gradient(model, x_adv, objective)
        with torch.no_grad():
            x_adv = project(x, x_adv + budget.step_size * steepest_ascent(grad, norm), eps, norm, low_high)
    return x_adv.detach()


class _Crafting:
    """Context that puts the model in eval mode while adversarial examples are crafted."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


@dataclass(frozen=True)
class MadryLoss:
    """PGD adversarial training (Madry et al., ICLR 2018): min E[ max_{||d|| <= eps} CE(f(x + d), y) ].

    clean_weight mixes in the clean loss: (1 - w) * CE(f(x_adv), y) + w * CE(f(x), y); 0 is Madry's
    objective, 0.5 trains on clean and adversarial inputs equally (Goodfellow et al. 2015).
    """

    budget: Budget
    clean_weight: float = 0.0

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """One batch: craft PGD examples, then the (mixed) cross-entropy."""
        with _Crafting(model):
            x_adv = pgd_perturb(model, x, CrossEntropy(y), self.budget, generator)
        if self.clean_weight <= 0:
            return functional.cross_entropy(model(x_adv), y)
        logits = model(torch.cat([x, x_adv]))
        clean, adversarial = (
            functional.cross_entropy(logits[: len(x)], y),
            functional.cross_entropy(logits[len(x) :], y),
        )
        return self.clean_weight * clean + (1.0 - self.clean_weight) * adversarial


@dataclass(frozen=True)
class TradesLoss:
    """TRADES (Zhang et al., ICML 2019): CE(f(x), y) + beta * max_{||d|| <= eps} KL(f(x) || f(x + d))."""

    budget: Budget
    beta: float = 6.0

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """One batch: the KL-maximising perturbation from a start near x, then the TRADES objective."""
        with _Crafting(model):
            with torch.no_grad():
                clean_log_probs = functional.log_softmax(model(x), dim=1)
                noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_adv = pgd_perturb(
                model, x, KlToClean(clean_log_probs), self.budget, generator, start=x + TRADES_START * noise
            )
        logits = model(torch.cat([x, x_adv]))
        clean_logits, adv_logits = logits[: len(x)], logits[len(x) :]
        robust = functional.kl_div(
            functional.log_softmax(adv_logits, dim=1),
            functional.softmax(clean_logits, dim=1),
            reduction="batchmean",
        )
        return functional.cross_entropy(clean_logits, y) + self.beta * robust


@dataclass(frozen=True)
class FastLoss:
    """Fast adversarial training (Wong, Rice and Kolter, ICLR 2020): FGSM from a random start.

    The perturbation starts uniformly in the eps ball, takes one steepest-ascent step of step_size
    (1.25 * eps by default) and is projected back; the model trains on the result.
    """

    budget: Budget

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """One batch: one random-start FGSM step, then the cross-entropy."""
        single = Budget(**{**self.budget.__dict__, "steps": 1, "random_start": True})
        with _Crafting(model):
            x_adv = pgd_perturb(model, x, CrossEntropy(y), single, generator)
        return functional.cross_entropy(model(x_adv), y)
