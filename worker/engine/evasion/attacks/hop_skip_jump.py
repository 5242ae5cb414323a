"""HopSkipJumpAttack (Chen, Jordan and Wainwright): decision-based minimum-norm attack in l2 and linf."""

import math
from typing import Any

import torch
from torch import Tensor, nn

from app.schemas.evasion import HopSkipJumpParams
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.hop_skip_jump_search import BoundaryWalk
from worker.engine.evasion.attacks.norms import Norm, perturbation_norm


class HopSkipJump(Attack):
    """HopSkipJumpAttack: walks along the decision boundary using only predicted labels.

    Paper: Chen, Jordan and Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based
    Attack", IEEE S&P 2020 (reference code: Jianbo-Lab/HSJA, hsja.py).

    Threat model: black-box, decision-based (only the predicted label of each query; runs on
    onnxruntime through `QueryOnlyModel`); minimum-norm in l2 or linf: it returns per sample the
    smallest adversarial input it found (x itself where none), inside the input range. With a finite
    eps it returns only those within eps (the evaluation runs it once with eps=inf).

    Start: untargeted, uniform noise in the input range is drawn until misclassified (at most
    init_size draws), then blended towards x by binary search on the blend coefficient (to 0.001);
    samples whose noise never works start from the nearest other sample of the batch predicted
    differently. Targeted, the start is the nearest sample of the batch predicted as the target
    (the reference's target image), else the same noise search towards the target. A binary search
    on the line to x (l2: blend; linf: clip to a shrinking box) brings the start to the boundary,
    to precision theta = gamma / d^(3/2) (l2) or gamma / d^2 (linf), d the input dimension.
    Iteration t (1..iterations): estimate the boundary's normal at the current point x_t by Monte
    Carlo, sign-weighted with baseline subtraction, over n_t = min(init_evals * sqrt(t), max_evals)
    random unit directions (Gaussian for l2, uniform in the cube for linf) of radius delta_t
    (0.1 * range width at t=1, then sqrt(d) * theta * dist (l2) or d * theta * dist (linf), dist
    the distance before the last boundary search, as in the reference); step along it (its sign
    for linf) with size dist(x_t) / sqrt(t), halved until adversarial (geometric progression); then
    binary-search back to the boundary. n_t is cut so that the gradient, step and boundary search
    fit in what is left of max_queries; a sample stops when no query is left.

    Parameters (keyword-only):
        norm: "l2" (default, the reference's constraint) or "linf".
        targeted: False (default) or True.
        max_queries: query budget per sample, default 20000 (the largest budget of the paper's
            tables; the reference's 40 iterations fit in it, about 18k queries).
        iterations: default 40 (reference num_iterations; Foolbox uses 64, ART 50).
        gamma: binary-search threshold factor, default 1.0.
        init_evals: directions in the first gradient estimate, default 100.
        max_evals: cap on directions per estimate, default 10000.
        init_size: random-noise draws when looking for a start, default 100 (ART's init_size).
        input_range: (low, high), default (0.0, 1.0).
    Cost: at most max_queries forward passes per sample (one query for the clean input included);
    `run` reports the queries spent per sample.
    """

    spec_type = HopSkipJumpParams

    def __init__(
        self,
        *,
        norm: Norm = "l2",
        targeted: bool = False,
        max_queries: int = 20000,
        iterations: int = 40,
        gamma: float = 1.0,
        init_evals: int = 100,
        max_evals: int = 10000,
        init_size: int = 100,
        input_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        """Validate and store the budget and the schedule."""
        super().__init__(norm=norm, targeted=targeted, input_range=input_range)
        for key, value in (("max_queries", max_queries), ("iterations", iterations)):
            if int(value) < 1:
                raise ValueError(f"{key} must be at least 1, got {value}")
        for key, value in (("init_evals", init_evals), ("init_size", init_size)):
            if int(value) < 1:
                raise ValueError(f"{key} must be at least 1, got {value}")
        if int(max_evals) < int(init_evals):
            raise ValueError(f"max_evals must be at least init_evals, got {max_evals} < {init_evals}")
        if not float(gamma) > 0:
            raise ValueError(f"gamma must be positive, got {gamma}")
        self.max_queries, self.iterations, self.gamma = int(max_queries), int(iterations), float(gamma)
        self.init_evals, self.max_evals, self.init_size = int(init_evals), int(max_evals), int(init_size)

    def params(self) -> dict[str, Any]:
        """Effective parameters, the step-size search included."""
        return {
            **super().params(),
            "max_queries": self.max_queries,
            "iterations": self.iterations,
            "gamma": self.gamma,
            "init_evals": self.init_evals,
            "max_evals": self.max_evals,
            "init_size": self.init_size,
            "stepsize_search": "geometric_progression",
        }

    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run the search; returns (x_adv, predictions, queries per sample)."""
        search = BoundaryWalk(self, model, x, labels, generator)
        x_adv, predictions = search.run()
        if not math.isinf(eps) and len(x):
            beyond = perturbation_norm(x_adv - x, self.norm) > eps * (1 + 1e-6) + 1e-7
            x_adv = torch.where(beyond.reshape((-1,) + (1,) * (x.dim() - 1)), x, x_adv)
            predictions = torch.where(beyond, search.clean, predictions)
        return x_adv, predictions, search.queries
