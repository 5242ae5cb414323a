"""The backdoor repair methods and their parameters: one spec, read by the backdoor_repair defense and by a
poisoning attack-mode job's params.repair (the engine's methods live in worker.engine.defense.repair)."""

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

RepairMethod = Literal["neural_cleanse", "fine_pruning", "anp", "fine_tuning"]

# The parameters each method takes (the engine dataclass's fields); any other method parameter is a 422.
_TRAINING = frozenset({"epochs", "learning_rate", "batch_size"})
METHOD_PARAMS: dict[str, frozenset[str]] = {
    "neural_cleanse": _TRAINING | {"stamp_share"},
    "fine_pruning": _TRAINING | {"max_accuracy_drop", "max_ratio"},
    "anp": frozenset(
        {"eps", "anp_steps", "alpha", "mask_lr", "iterations", "batch_size", "threshold", "prune_fraction"}
    ),
    "fine_tuning": _TRAINING,
}
ALL_METHOD_PARAMS: frozenset[str] = frozenset().union(*METHOD_PARAMS.values())

# One type per method parameter; None takes the engine's default.
Epochs = Annotated[int, Field(ge=1, le=200)] | None
LearningRate = Annotated[float, Field(gt=0, le=10)] | None
BatchSize = Annotated[int, Field(ge=1, le=4096)] | None
StampShare = Annotated[float, Field(gt=0, le=1)] | None
MaxAccuracyDrop = Annotated[float, Field(ge=0, le=1)] | None
MaxRatio = Annotated[float, Field(gt=0, le=1)] | None
Eps = Annotated[float, Field(ge=0, lt=1)] | None
Alpha = Annotated[float, Field(ge=0, le=1)] | None
MaskLr = Annotated[float, Field(gt=0, le=100)] | None
Iterations = Annotated[int, Field(ge=1, le=20_000)] | None
Threshold = Annotated[float, Field(gt=0, lt=1)] | None
AnpSteps = Annotated[int, Field(ge=1, le=100)] | None
PruneFraction = Annotated[float, Field(ge=0, lt=1)] | None
ScanSteps = Annotated[int, Field(ge=10, le=5000)]


def foreign_params(model: BaseModel, method: str) -> str | None:
    """The error message when `model` sets a parameter `method` does not take, else None."""
    given = {k for k in model.model_fields_set if getattr(model, k) is not None} & ALL_METHOD_PARAMS
    foreign = sorted(given - METHOD_PARAMS[method])
    if not foreign:
        return None
    return (
        f"method {method} takes no {', '.join(foreign)}; its parameters: "
        f"{', '.join(sorted(METHOD_PARAMS[method]))}"
    )


def given_params(model: BaseModel, method: str) -> dict[str, object]:
    """The method's parameters that `model` sets (the engine supplies the rest)."""
    return {k: getattr(model, k) for k in sorted(METHOD_PARAMS[method]) if getattr(model, k) is not None}


class RepairMethodParams(BaseModel):
    """Every repair method's parameters in one place; a method takes only its own (METHOD_PARAMS)."""

    model_config = ConfigDict(extra="forbid")

    scan_steps: ScanSteps = 600
    epochs: Epochs = None
    learning_rate: LearningRate = None
    batch_size: BatchSize = None
    stamp_share: StampShare = None
    max_accuracy_drop: MaxAccuracyDrop = None
    max_ratio: MaxRatio = None
    eps: Eps = None
    alpha: Alpha = None
    mask_lr: MaskLr = None
    iterations: Iterations = None
    threshold: Threshold = None
    anp_steps: AnpSteps = None
    prune_fraction: PruneFraction = None


class RepairMethodSpec(RepairMethodParams):
    """One repair method of a poisoning attack-mode job (params.repair), run on each backdoor attack's
    largest-rate victim: `name` and that method's parameters (as the backdoor_repair defense takes them);
    scan_steps is Neural Cleanse's budget per class for the reversed triggers that neural_cleanse unlearns.
    """

    name: RepairMethod

    @model_validator(mode="after")
    def _own_params(self) -> Self:
        """Only the named method's parameters."""
        message = foreign_params(self, self.name)
        if message:
            raise ValueError(message)
        return self

    def method_params(self) -> dict[str, object]:
        """The method's parameters that were given."""
        return given_params(self, self.name)
