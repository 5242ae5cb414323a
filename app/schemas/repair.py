"""Backdoor repair, a defense (`name: backdoor_repair`): remove a trojan with a small clean set.

Each method's parameters and defaults are its typed spec (app.schemas.repair_methods: METHOD_SPECS); the
engine's methods in worker.engine.defense.repair are built from it (REPAIRS, keyed by the spec type).
"""

from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.poisoning import ClassIndex, TriggerParams
from app.schemas.repair_methods import (
    METHOD_PARAMS,
    RepairMethod,
    RepairMethodParams,
    RepairMethodSpecT,
    foreign_params,
    given_params,
    method_spec,
)

__all__ = ["METHOD_PARAMS", "BackdoorRepairParams", "RepairMethod"]


class _Closed(BaseModel):
    """A closed schema: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


class PatchTriggerSpec(TriggerParams):
    """The BadNets patch the user knows was planted (the poisoning kind's badnets trigger spec)."""

    name: Literal["badnets"]


class BlendedTriggerSpec(_Closed):
    """The blended trigger the user knows was planted: (1 - alpha) x + alpha p, with the seeded noise
    pattern of the poisoning kind's blended attack (pattern_seed)."""

    name: Literal["blended"]
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.2
    pattern_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


RepairTrigger = Annotated[PatchTriggerSpec | BlendedTriggerSpec, Field(discriminator="name")]


class BackdoorRepairParams(RepairMethodParams):
    """Backdoor repair from the model and a small clean set (params.train_dataset_id), without the poisoned
    training data. Threat model: the defender holds the trained model (white-box: its graph and weights) and
    a few hundred clean labelled samples; the trigger is unknown unless the user supplies it.

    Methods: neural_cleanse (Wang et al., IEEE S&P 2019: unlearning, fine-tuning with Neural Cleanse's
    reversed trigger stamped on clean samples that keep their labels; stamp_share 0.2), fine_pruning (Liu et
    al., RAID 2018: the last convolution's channels dormant on clean data pruned while clean accuracy drops
    at most max_accuracy_drop 0.04, up to max_ratio 0.9, then fine-tuned), anp (Wu and Wang, NeurIPS 2021:
    a neuron mask learned under adversarial neuron perturbations of size eps in anp_steps ascent steps,
    trade-off alpha, mask_lr, iterations, batch_size; neurons below threshold pruned, or the prune_fraction
    with the smallest masks when it is above 0), fine_tuning (the baseline:
    training on the clean set). Training methods: epochs 10, learning_rate 1e-3 (Adam), batch_size 32.
    A method's parameters left out take the engine's defaults; another method's parameter is a 422.

    trigger and target_class (both or neither): the planted trigger, measured before and after. scan_steps:
    Neural Cleanse's budget per class for the scan before and after (its reversed triggers are measured
    always and unlearned by neural_cleanse).
    """

    trains: ClassVar[bool] = True

    name: Literal["backdoor_repair"]
    method: RepairMethod
    trigger: RepairTrigger | None = None
    target_class: ClassIndex | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Trigger and target class together; only the chosen method's parameters."""
        if (self.trigger is None) != (self.target_class is None):
            raise ValueError("give the planted trigger and its target_class together, or neither")
        message = foreign_params(self, self.method)
        if message:
            raise ValueError(message)
        return self

    def method_spec(self) -> RepairMethodSpecT:
        """The method's typed spec: the parameters given, its defaults for the rest."""
        return method_spec(self.method, self.method_params())

    def method_params(self) -> dict[str, object]:
        """The chosen method's parameters that were given (the engine supplies the rest)."""
        return given_params(self, self.method)
