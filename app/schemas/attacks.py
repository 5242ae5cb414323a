"""Typed, closed parameter schemas for each evasion attack; the names are the registry's names."""

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Norm = Literal["linf", "l2"]
Eps = Annotated[float, Field(gt=0, allow_inf_nan=False, description="Perturbation budget in the norm.")]


class TargetMode(StrEnum):
    """How targeted attacks pick a target class per sample."""

    least_likely = "least_likely"
    random = "random"
    fixed = "fixed"


class AttackParamsBase(BaseModel):
    """Parameters every evasion attack shares."""

    model_config = ConfigDict(extra="forbid")

    norm: Norm = "linf"
    eps: Annotated[list[Eps], Field(min_length=1, max_length=32)]
    targeted: bool = False
    target_mode: TargetMode | None = Field(
        default=None, description="Required when targeted: least_likely, random or fixed."
    )
    target_class: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="For target_mode fixed."
    )

    @model_validator(mode="after")
    def _check_targets(self) -> Self:
        """A targeted attack needs a way to pick targets; an untargeted one takes none."""
        if self.targeted and self.target_mode is None:
            raise ValueError("targeted attacks need target_mode: 'least_likely', 'random' or 'fixed'")
        if not self.targeted and (self.target_mode is not None or self.target_class is not None):
            raise ValueError("target_mode and target_class only apply when targeted is true")
        if self.target_mode == TargetMode.fixed and self.target_class is None:
            raise ValueError("target_mode 'fixed' needs target_class")
        if self.target_mode != TargetMode.fixed and self.target_class is not None:
            raise ValueError("target_class only applies with target_mode 'fixed'")
        return self


class FgsmParams(AttackParamsBase):
    """FGSM (Goodfellow et al., 2015): one signed (linf) or normalised (l2) gradient step of size eps."""

    name: Literal["fgsm"]


class PgdParams(AttackParamsBase):
    """PGD (Madry et al., 2018). Defaults: 40 steps, step size 2.5 * eps / steps, random start, 1 restart."""

    name: Literal["pgd"]
    steps: Annotated[int, Field(ge=1, le=10_000)] = 40
    step_size: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="Absolute step size; default 2.5 * eps / steps for each eps."
    )
    random_start: bool = True
    restarts: Annotated[int, Field(ge=1, le=100)] = 1


AttackParams = Annotated[FgsmParams | PgdParams, Field(discriminator="name")]
ATTACK_NAMES: tuple[str, ...] = ("fgsm", "pgd")
WHITE_BOX_ATTACKS: frozenset[str] = frozenset({"fgsm", "pgd"})
