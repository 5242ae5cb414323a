"""HopSkipJumpAttack (Chen, Jordan and Wainwright): decision-based minimum-norm attack in l2 and linf."""

import math
from typing import Any

import torch
from torch import Tensor, nn

from app.schemas.evasion import HopSkipJumpParams
from worker.engine.evasion.attacks.base import Attack
from worker.engine.evasion.attacks.hop_skip_jump_search import BoundaryWalk
from worker.engine.evasion.attacks.norms import perturbation_norm


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

    Parameters, from the spec (`HopSkipJumpParams`, which holds their defaults and limits):
        norm: "l2" (the reference's constraint) or "linf".
        targeted: False or True.
        max_queries: query budget per sample (its default is the largest budget of the paper's
            tables; the reference's 40 iterations fit in it, about 18k queries).
        iterations: the reference's num_iterations (Foolbox uses 64, ART 50).
        gamma: binary-search threshold factor.
        init_evals: directions in the first gradient estimate.
        max_evals: cap on directions per estimate, at least init_evals.
        init_size: random-noise draws when looking for a start (ART's init_size).
    Keyword argument: input_range, (low, high), default (0.0, 1.0).
    Cost: at most max_queries forward passes per sample (one query for the clean input included);
    `run` reports the queries spent per sample.
    """

    spec_type = HopSkipJumpParams

    def __init__(self, spec: HopSkipJumpParams, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Read the budget and the schedule from the spec; max_evals may not be below init_evals."""
        super().__init__(spec, input_range=input_range)
        if spec.max_evals < spec.init_evals:
            raise ValueError(
                f"max_evals must be at least init_evals, got {spec.max_evals} < {spec.init_evals}"
            )
        self.max_queries, self.iterations, self.gamma = spec.max_queries, spec.iterations, spec.gamma
        self.init_evals, self.max_evals, self.init_size = spec.init_evals, spec.max_evals, spec.init_size

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
