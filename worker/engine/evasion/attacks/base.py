"""The attack interface: the base class whose call searches, then verifies what the search found.

Every engine attack declares its spec type (`spec_type = PgdParams`, a class of `app.schemas.evasion`) and is
constructed from a spec of that type: the spec holds the parameters, their defaults and limits, and the facts
(threat model, minimum-norm, images, ...), the engine class only the search. Defining a subclass with a spec
type registers it (see `registry.py`).
"""

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self, final

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.schemas.evasion import AttackParamsBase
from worker.engine.evasion.attacks.norms import Norm, clamp_range, perturbation_norm, project

# Engine attack classes by their spec type, filled as subclasses are defined.
REGISTERED: dict[type[AttackParamsBase], type["Attack"]] = {}
# The eps list of a spec built by `Attack.configured` when none is given (the spec requires one; the engine
# takes eps per call and never reads the spec's).
CONFIGURED_EPS = (1.0,)


def spec_name(spec_type: type[AttackParamsBase]) -> str:
    """The enumerated name of a spec type (its one-value `name: Literal[...]`)."""
    name: str = spec_type.model_fields["name"].annotation.__args__[0]  # type: ignore[union-attr]
    return name


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

    An attack is constructed once from its typed spec (`PGD(spec, input_range=...)`; library code and tests
    may write `PGD.configured(steps=10)`), which holds every parameter with its default and limits, and is
    then run on batches with `run`, which takes eps per call so one configured attack can sweep several
    budgets (the spec's eps list is the job's sweep; the engine never reads it). `run` is final and
    verifies (foolbox's rule): it runs the subclass's search (`_attack`), projects the result onto the eps
    ball and the input range, and takes predictions and success from one forward pass of a judge model
    (the attacked model unless the caller gives another). Subclasses write only the search.

    From every spec: norm ("linf" or "l2", the norm of the eps ball) and targeted (False: push predictions
    away from the true label; True: pull them towards given target labels).
    Keyword argument: input_range, the (low, high) bounds of valid inputs, default (0.0, 1.0).
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
        cls.name = spec_name(spec_type)
        cls.requires_gradients, cls.minimum_norm = spec_type.white_box, spec_type.minimum_norm
        cls.iterative, cls.ensemble, cls.needs_images = (
            spec_type.iterative,
            spec_type.ensemble,
            spec_type.needs_images,
        )
        REGISTERED[spec_type] = cls

    def __init__(self, spec: AttackParamsBase, *, input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        """Keep the validated spec (of this class's spec_type) and the threat model every attack shares."""
        if not isinstance(spec, self.spec_type):
            raise TypeError(
                f"{type(self).__name__} is built from a {self.spec_type.__name__}, not {type(spec).__name__}"
            )
        low, high = float(input_range[0]), float(input_range[1])
        if not low < high:
            raise ValueError(f"input_range must satisfy low < high, got {input_range}")
        self.spec = spec
        self.norm: Norm = spec.norm
        self.targeted = spec.targeted
        self.input_range = (low, high)

    @classmethod
    def configured(cls, *, input_range: tuple[float, float] = (0.0, 1.0), **fields: Any) -> Self:
        """Library and test shorthand: the attack built from its spec type validated from `fields` (pydantic
        checks every limit) with the spec type's name; `fields` that name a keyword of the constructor other
        than the spec (AutoAttack's `accelerated`, say) go to the constructor. What the engine never reads
        (eps and targets are given per call) gets a placeholder unless given: eps CONFIGURED_EPS, and
        target_mode "random" when targeted."""
        keywords = cls._keywords() - {"input_range"}
        options = {key: fields.pop(key) for key in keywords & set(fields)}
        fields.setdefault("eps", list(CONFIGURED_EPS))
        if fields.get("targeted"):
            fields.setdefault("target_mode", "random")
        spec = cls.spec_type.model_validate({"name": spec_name(cls.spec_type), **fields})
        return cls(spec, input_range=input_range, **options)

    @classmethod
    def _keywords(cls) -> set[str]:
        """The constructor's keyword-only parameters."""
        return {
            name
            for name, parameter in inspect.signature(cls.__init__).parameters.items()
            if parameter.kind == parameter.KEYWORD_ONLY
        }

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
