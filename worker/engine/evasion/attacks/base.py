"""The attack interface: a white-box evasion attack on a differentiable classifier."""

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn
from torch.nn import functional

from worker.engine.evasion.attacks.norms import Norm, check_norm, perturbation_norm


@dataclass(frozen=True)
class AttackResult:
    """What one attack run produced, per sample.

    `x_adv` lies inside the eps ball around the clean input and inside the input range;
    `predictions` are the model's labels for `x_adv`; `success` is `predictions != y` for an
    untargeted attack and `predictions == targets` for a targeted one.
    """

    x_adv: Tensor
    predictions: Tensor
    success: Tensor
    queries: Tensor | None = None  # per-sample model queries, for attacks that count them (black-box)


class Attack(ABC):
    """Base class for evasion attacks.

    An attack is configured once with typed keyword-only parameters (threat model and budget
    parameters other than eps) and then run on batches with `run`, which takes eps per call so
    one configured attack can sweep several budgets. Subclasses implement `_attack`.

    Common parameters:
        norm: "linf" (default) or "l2", the norm of the eps ball.
        targeted: False (default) to push predictions away from the true label; True to pull
            them towards given target labels.
        input_range: (low, high) bounds of valid inputs, default (0.0, 1.0).
    """

    name: ClassVar[str]
    # False for attacks that only query the model's outputs (black-box): they run on a model with no
    # gradient path at all (onnxruntime), and count their queries.
    requires_gradients: ClassVar[bool] = True
    # True for attacks that search for the smallest perturbation instead of working inside a given
    # eps: the evaluation runs them once per batch with eps=inf and counts a sample as broken at eps
    # only when its perturbation's norm is at most eps (see `restrict_to_budget`).
    minimum_norm: ClassVar[bool] = False
    # False for a single-step attack (FGSM): the sanity checks expect iterative attacks to beat it.
    iterative: ClassVar[bool] = True
    # True for an ensemble of several attacks (AutoAttack): left out of single-attack comparisons.
    ensemble: ClassVar[bool] = False
    # True for attacks defined on images [channels, height, width] only.
    needs_images: ClassVar[bool] = False
    # Budget keys the "more iterations change little" check doubles (empty: the check skips the attack).
    BUDGET_KEYS: ClassVar[tuple[str, ...]] = ()
    # Optional constructor keywords that `from_spec` reads from a job spec's attack entry.
    SPEC_KEYS: ClassVar[tuple[str, ...]] = ()
    # Keys every spec entry may carry besides SPEC_KEYS (read by the evaluation, not the constructor).
    COMMON_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"name", "norm", "eps", "targeted", "target_mode", "target_class"}
    )

    def __init__(
        self,
        *,
        norm: Norm = "linf",
        targeted: bool = False,
        input_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        """Store the threat model shared by every attack."""
        low, high = float(input_range[0]), float(input_range[1])
        if not low < high:
            raise ValueError(f"input_range must satisfy low < high, got {input_range}")
        self.norm: Norm = check_norm(norm)
        self.targeted = bool(targeted)
        self.input_range = (low, high)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, input_range: tuple[float, float] = (0.0, 1.0)) -> Self:
        """Build from a spec entry; unknown keys are an error, keys set to None keep their defaults."""
        unknown = sorted(set(spec) - cls.COMMON_KEYS - set(cls.SPEC_KEYS))
        if unknown:
            raise ValueError(
                f"{cls.name}: unknown parameters {', '.join(unknown)}; "
                f"known: {', '.join(sorted(cls.COMMON_KEYS | set(cls.SPEC_KEYS)))}"
            )
        if "eps" not in spec and not cls.minimum_norm:
            raise ValueError(f"{cls.name}: missing parameter eps")
        options = {key: spec[key] for key in cls.SPEC_KEYS if spec.get(key) is not None}
        return cls(
            norm=spec.get("norm") or "linf",
            targeted=bool(spec.get("targeted", False)),
            input_range=input_range,
            **options,
        )

    @property
    def work_units(self) -> int:
        """Forward-and-backward passes per sample per run; used to weight progress."""
        return 1

    def params(self) -> dict[str, Any]:
        """Effective parameters with defaults resolved, for the report."""
        return {"norm": self.norm, "targeted": self.targeted, "input_range": list(self.input_range)}

    def params_at(self, eps: float) -> dict[str, Any]:
        """Parameters that depend on eps (e.g. a derived step size), for a report's results row."""
        return {}

    def details_at(self, eps: float) -> dict[str, Any]:
        """What runs at eps found beyond per-sample outcomes (an ensemble's breakdown), for the report."""
        return {}

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        eps: float,
        targets: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AttackResult:
        """Attack a batch within budget eps; returns adversarial inputs, predictions and success."""
        if math.isnan(eps) or eps < 0 or (math.isinf(eps) and not self.minimum_norm):
            raise ValueError(f"eps must be a finite non-negative number, got {eps}")
        if self.targeted and targets is None:
            raise ValueError("a targeted attack needs targets")
        if len(x) != len(y) or (targets is not None and len(targets) != len(y)):
            raise ValueError("x, y and targets must have the same number of samples")
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(0)
        x = x.detach()
        labels = targets if self.targeted else y
        assert labels is not None
        was_training = model.training
        model.eval()
        try:
            x_adv, predictions, *counted = self._attack(
                model, x, labels.to(x.device), eps=float(eps), generator=generator
            )
        finally:
            model.train(was_training)
        success = self._succeeded(predictions, y.to(x.device), targets)
        queries = counted[0] if counted else None
        return AttackResult(x_adv=x_adv.detach(), predictions=predictions, success=success, queries=queries)

    def _succeeded(self, predictions: Tensor, y: Tensor, targets: Tensor | None) -> Tensor:
        """Per-sample success: prediction changed (untargeted) or equals the target (targeted)."""
        if self.targeted:
            assert targets is not None
            return predictions == targets.to(predictions.device)
        return predictions != y

    def _objective_and_grad(self, model: nn.Module, x_adv: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample objective to ascend and its gradient w.r.t. the input only (one forward+backward).

        The objective is the cross-entropy to the true label (untargeted) or minus the cross-entropy
        to the target (targeted). Only the input gradient is computed; parameter gradients are
        neither computed nor accumulated.
        """
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = functional.cross_entropy(model(x_adv), labels, reduction="none")
            objective = -loss if self.targeted else loss
            (grad,) = torch.autograd.grad(objective.sum(), x_adv)
        return objective.detach(), grad

    @torch.no_grad()
    def _objective_and_predictions(
        self, model: nn.Module, x_adv: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Per-sample objective and predicted labels without building a graph."""
        logits = model(x_adv)
        loss = functional.cross_entropy(logits, labels, reduction="none")
        return (-loss if self.targeted else loss), logits.argmax(dim=1)

    @abstractmethod
    def _attack(
        self, model: nn.Module, x: Tensor, labels: Tensor, *, eps: float, generator: torch.Generator
    ) -> tuple[Tensor, ...]:
        """Return (x_adv, predictions on x_adv) or (x_adv, predictions, per-sample queries).

        labels are true labels (untargeted) or targets (targeted). Minimum-norm attacks get
        eps=inf and return their smallest adversarial found (x itself where they found none).
        """


def restrict_to_budget(result: AttackResult, x: Tensor, y: Tensor, eps: float, norm: Norm) -> AttackResult:
    """A minimum-norm attack's result seen at budget eps: successes farther than eps fall back to x.

    x are the attacked (clean-correct) samples, so the prediction of a sample that falls back is y.
    """
    within = perturbation_norm(result.x_adv - x, norm) <= eps * (1 + 1e-6) + 1e-7
    keep = result.success & within
    mask = keep.reshape((-1,) + (1,) * (x.dim() - 1))
    return AttackResult(
        x_adv=torch.where(mask, result.x_adv, x),
        predictions=torch.where(keep, result.predictions, y),
        success=keep,
        queries=result.queries,
    )
