"""The attack interface: the base class whose call searches, then verifies what the search found.

Every engine attack declares its spec type (`spec_type = PgdParams`, a class of `app.schemas.evasion`):
the spec holds the parameters and the facts (threat model, minimum-norm, images, ...), the engine class
only the search. Defining a subclass with a spec type registers it (see `registry.py`).
"""

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, final

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.evasion import AttackParamsBase
from worker.engine.evasion.attacks.norms import Norm, check_norm, clamp_range, perturbation_norm, project

# Engine attack classes by their spec type, filled as subclasses are defined.
REGISTERED: dict[type[AttackParamsBase], type["Attack"]] = {}


@dataclass(frozen=True)
class AttackResult:
    """What one attack run produced, per sample, as the judge model saw it.

    `x_adv` lies inside the eps ball around the clean input and inside the input range;
    `predictions` are the judge's labels for `x_adv`; `success` is `predictions != y` for an
    untargeted attack and `predictions == targets` for a targeted one.
    """

    x_adv: Tensor
    predictions: Tensor
    success: Tensor
    queries: Tensor | None = None  # per-sample model queries, for attacks that count them (black-box)


@dataclass(frozen=True)
class Candidate:
    """What a search returned, unverified: candidate inputs and, for black-box searches, queries spent."""

    x_adv: Tensor
    queries: Tensor | None = None


class Attack(ABC):
    """Base class for evasion attacks.

    An attack is configured once with typed keyword-only parameters (threat model and budget
    parameters other than eps), usually from its spec with `from_spec`, and then run on batches with
    `run`, which takes eps per call so one configured attack can sweep several budgets. `run` is final
    and verifies (foolbox's rule): it runs the subclass's search (`_attack`), projects the result onto
    the eps ball and the input range, and takes predictions and success from one forward pass of a
    judge model (the attacked model unless the caller gives another). Subclasses write only the search.

    Common parameters:
        norm: "linf" (default) or "l2", the norm of the eps ball.
        targeted: False (default) to push predictions away from the true label; True to pull
            them towards given target labels.
        input_range: (low, high) bounds of valid inputs, default (0.0, 1.0).
    """

    # The spec class this attack is built from; its facts are the attack's facts.
    spec_type: ClassVar[type[AttackParamsBase]]
    # The spec's enumerated name (set from spec_type).
    name: ClassVar[str]
    # Read-only views of the spec type's facts, set from spec_type when the class is defined (declare
    # facts on the spec, never here): white_box, minimum_norm, iterative, ensemble, needs_images.
    requires_gradients: ClassVar[bool]
    minimum_norm: ClassVar[bool]
    iterative: ClassVar[bool]
    ensemble: ClassVar[bool]
    needs_images: ClassVar[bool]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register a subclass that declares its own spec type, and take the spec's name and facts."""
        super().__init_subclass__(**kwargs)
        spec_type = cls.__dict__.get("spec_type")
        if spec_type is None:
            return
        cls.name = spec_type.model_fields["name"].annotation.__args__[0]
        cls.requires_gradients, cls.minimum_norm = spec_type.white_box, spec_type.minimum_norm
        cls.iterative, cls.ensemble, cls.needs_images = (
            spec_type.iterative,
            spec_type.ensemble,
            spec_type.needs_images,
        )
        missing = set(spec_type.model_fields) - set(AttackParamsBase.model_fields) - cls._keywords()
        if missing:
            raise TypeError(f"{cls.__name__} takes no keyword for {', '.join(sorted(missing))} of its spec")
        REGISTERED[spec_type] = cls

    @classmethod
    def _keywords(cls) -> set[str]:
        """The constructor's keyword parameters."""
        return {
            name
            for name, parameter in inspect.signature(cls.__init__).parameters.items()
            if parameter.kind == parameter.KEYWORD_ONLY
        }

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
    def from_spec(
        cls, spec: AttackParamsBase | Mapping[str, Any], *, input_range: tuple[float, float] = (0.0, 1.0)
    ) -> Self:
        """Build from the attack's typed spec: every spec field the constructor takes, unset (None) ones
        keeping the constructor's default. A plain mapping (library use) is validated into the spec
        type first, keys set to None dropped."""
        if not isinstance(spec, AttackParamsBase):
            given = {key: value for key, value in spec.items() if value is not None}
            spec = cls.spec_type.model_validate({**given, "name": cls.name})
        if not isinstance(spec, cls.spec_type):
            raise TypeError(
                f"{cls.__name__} is built from a {cls.spec_type.__name__}, not {type(spec).__name__}"
            )
        keywords = cls._keywords() - {"input_range"}
        options = {
            key: getattr(spec, key)
            for key in type(spec).model_fields
            if key in keywords and getattr(spec, key) is not None
        }
        return cls(input_range=input_range, **options)

    def params(self) -> dict[str, Any]:
        """Effective parameters with defaults resolved, for the report."""
        return {"norm": self.norm, "targeted": self.targeted, "input_range": list(self.input_range)}

    def params_at(self, eps: float) -> dict[str, Any]:
        """Parameters that depend on eps (e.g. a derived step size), for a report's results row."""
        return {}

    def details_at(self, eps: float) -> dict[str, Any]:
        """What runs at eps found beyond per-sample outcomes (an ensemble's breakdown), for the report."""
        return {}

    def search(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        eps: float,
        targets: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Candidate:
        """The subclass's search on a batch within budget eps, unverified (an ensemble's parts use it)."""
        if math.isnan(eps) or eps < 0 or (math.isinf(eps) and not self.spec_type.minimum_norm):
            raise ValueError(f"eps must be a finite non-negative number, got {eps}")
        if self.targeted and targets is None:
            raise ValueError("a targeted attack needs targets")
        if len(x) != len(y) or (targets is not None and len(targets) != len(y)):
            raise ValueError("x, y and targets must have the same number of samples")
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(0)
        labels = targets if self.targeted else y
        assert labels is not None
        was_training = model.training
        model.eval()
        try:
            x_adv, _claimed, *counted = self._attack(
                model, x.detach(), labels.to(x.device), eps=float(eps), generator=generator
            )
        finally:
            model.train(was_training)
        return Candidate(x_adv=x_adv.detach(), queries=counted[0] if counted else None)

    @final
    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        eps: float,
        targets: Tensor | None = None,
        generator: torch.Generator | None = None,
        judge: nn.Module | None = None,
    ) -> AttackResult:
        """Attack a batch within budget eps and verify: search, project, and judge with one forward pass.

        The judge is `model` unless given (a defense's deployed classifier, say); what the search
        claimed is never read.
        """
        candidate = self.search(model, x, y, eps=eps, targets=targets, generator=generator)
        return self.verify(judge if judge is not None else model, x.detach(), y, targets, candidate, eps)

    @torch.no_grad()
    def verify(
        self, judge: nn.Module, x: Tensor, y: Tensor, targets: Tensor | None, candidate: Candidate, eps: float
    ) -> AttackResult:
        """The candidate projected onto the eps ball (a finite eps) and the input range, then judged."""
        if math.isinf(eps):
            x_adv = clamp_range(candidate.x_adv, self.input_range)
        else:
            x_adv = project(x, candidate.x_adv, eps, self.norm, self.input_range)
        was_training = judge.training
        judge.eval()
        try:
            predictions = judge(x_adv).argmax(dim=1)
        finally:
            judge.train(was_training)
        y = y.to(predictions.device)
        if self.targeted:
            assert targets is not None
            success = predictions == targets.to(predictions.device)
        else:
            success = predictions != y
        return AttackResult(x_adv=x_adv, predictions=predictions, success=success, queries=candidate.queries)

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
        """The search: return (x_adv, predictions on x_adv) or (x_adv, predictions, per-sample queries).

        labels are true labels (untargeted) or targets (targeted). Minimum-norm attacks get
        eps=inf and return their smallest adversarial found (x itself where they found none). The
        predictions returned are the search's own word and are never read: `run` judges x_adv itself.
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
