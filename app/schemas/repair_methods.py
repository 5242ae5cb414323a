"""The backdoor repair methods and their parameters: one spec, read by the backdoor_repair defense and by a
poisoning attack-mode job's params.repair (the engine's methods live in worker.engine.defense.repair)."""

from collections.abc import Mapping
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

# One type per method parameter (its limits); the flat request shape takes each as optional (None: the
# method spec's default).
EpochsValue = Annotated[int, Field(ge=1, le=200)]
LearningRateValue = Annotated[float, Field(gt=0, le=10)]
BatchSizeValue = Annotated[int, Field(ge=1, le=4096)]
StampShareValue = Annotated[float, Field(gt=0, le=1)]
MaxAccuracyDropValue = Annotated[float, Field(ge=0, le=1)]
MaxRatioValue = Annotated[float, Field(gt=0, le=1)]
EpsValue = Annotated[float, Field(ge=0, lt=1)]
AlphaValue = Annotated[float, Field(ge=0, le=1)]
MaskLrValue = Annotated[float, Field(gt=0, le=100)]
IterationsValue = Annotated[int, Field(ge=1, le=20_000)]
ThresholdValue = Annotated[float, Field(gt=0, lt=1)]
AnpStepsValue = Annotated[int, Field(ge=1, le=100)]
PruneFractionValue = Annotated[float, Field(ge=0, lt=1)]
ScanSteps = Annotated[int, Field(ge=10, le=5000)]


RepairMethod = Literal["neural_cleanse", "fine_pruning", "anp", "fine_tuning"]


class _MethodSpec(BaseModel):
    """One repair method's typed parameters with their published defaults (the engine class reads them)."""

    model_config = ConfigDict(extra="forbid")


class _TrainingParams(_MethodSpec):
    """The fine-tuning recipe of the training methods: epochs 10, learning_rate 1e-3 (Adam), batch_size 32."""

    epochs: EpochsValue = 10
    learning_rate: LearningRateValue = 1e-3
    batch_size: BatchSizeValue = 32


class FineTuningMethod(_TrainingParams):
    """Fine-tuning on the clean set, the baseline every repair paper compares against."""

    name: Literal["fine_tuning"] = "fine_tuning"


class NeuralCleanseMethod(_MethodSpec):
    """Neural Cleanse unlearning (Wang et al., S&P 2019): fine-tune with the reversed trigger stamped on a
    stamp_share of the clean samples, which keep their labels."""

    name: Literal["neural_cleanse"] = "neural_cleanse"
    stamp_share: StampShareValue = 0.2
    epochs: EpochsValue = 10
    learning_rate: LearningRateValue = 1e-3
    batch_size: BatchSizeValue = 32


class FinePruningMethod(_MethodSpec):
    """Fine-Pruning (Liu et al., RAID 2018): prune the last convolution's channels dormant on clean data while
    clean accuracy drops at most max_accuracy_drop, up to max_ratio of them, then fine-tune."""

    name: Literal["fine_pruning"] = "fine_pruning"
    max_accuracy_drop: MaxAccuracyDropValue = 0.04
    max_ratio: MaxRatioValue = 0.9
    epochs: EpochsValue = 10
    learning_rate: LearningRateValue = 1e-3
    batch_size: BatchSizeValue = 32


class AnpMethod(_MethodSpec):
    """Adversarial Neuron Pruning (Wu and Wang, NeurIPS 2021): a neuron mask learned under adversarial neuron
    perturbations of size eps (anp_steps ascent steps), trade-off alpha, mask_lr, iterations of batch_size;
    neurons whose mask falls below threshold are pruned, or the prune_fraction with the smallest masks."""

    name: Literal["anp"] = "anp"
    eps: EpsValue = 0.4
    anp_steps: AnpStepsValue = 1
    alpha: AlphaValue = 0.2
    mask_lr: MaskLrValue = 0.2
    iterations: IterationsValue = 2000
    batch_size: BatchSizeValue = 128
    threshold: ThresholdValue = 0.2
    prune_fraction: PruneFractionValue = 0.0


RepairMethodSpecT = FineTuningMethod | NeuralCleanseMethod | FinePruningMethod | AnpMethod
# The discriminator: a method's name picks its spec class (as the API's attack field picks by name).
METHOD_SPECS: dict[str, type[RepairMethodSpecT]] = {
    cls.model_fields["name"].default: cls
    for cls in (NeuralCleanseMethod, FinePruningMethod, AnpMethod, FineTuningMethod)
}
# The parameters each method takes (its spec's fields); any other method parameter is a 422.
METHOD_PARAMS: dict[str, frozenset[str]] = {
    name: frozenset(cls.model_fields) - {"name"} for name, cls in METHOD_SPECS.items()
}
ALL_METHOD_PARAMS: frozenset[str] = frozenset().union(*METHOD_PARAMS.values())


def method_spec(method: str, params: Mapping[str, object]) -> RepairMethodSpecT:
    """The typed spec of a method from the parameters given (the rest take the spec's defaults)."""
    if method not in METHOD_SPECS:
        raise ValueError(f"unknown repair method {method!r}; available: {', '.join(METHOD_SPECS)}")
    return METHOD_SPECS[method].model_validate(dict(params))


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
    """The method's parameters that `model` sets (its spec supplies the rest)."""
    return {k: getattr(model, k) for k in sorted(METHOD_PARAMS[method]) if getattr(model, k) is not None}


class RepairMethodParams(BaseModel):
    """Every repair method's parameters in one place; a method takes only its own (METHOD_PARAMS)."""

    model_config = ConfigDict(extra="forbid")

    scan_steps: ScanSteps = 600
    epochs: EpochsValue | None = None
    learning_rate: LearningRateValue | None = None
    batch_size: BatchSizeValue | None = None
    stamp_share: StampShareValue | None = None
    max_accuracy_drop: MaxAccuracyDropValue | None = None
    max_ratio: MaxRatioValue | None = None
    eps: EpsValue | None = None
    alpha: AlphaValue | None = None
    mask_lr: MaskLrValue | None = None
    iterations: IterationsValue | None = None
    threshold: ThresholdValue | None = None
    anp_steps: AnpStepsValue | None = None
    prune_fraction: PruneFractionValue | None = None


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

    def method_spec(self) -> RepairMethodSpecT:
        """The method's typed spec: the parameters given, its defaults for the rest."""
        return method_spec(self.name, self.method_params())
