"""The evasion kind: one typed spec class per attack (parameters, defaults, limits, facts, cost) and the job.

The engine's attack classes are built from these specs (`spec_type`); the registry of spec classes and
the open `AttackSpec` field live in `app.schemas.evasion_base`.
"""

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.common import Eps, JobSpecBase, Norm, TargetMode
from app.schemas.evasion_base import AttackSpec, EvasionAttackSpec, attack_specs

__all__ = ["AttackParams", "AttackSpec", "EvasionAttackSpec", "attack_specs"]

# The attack field's type under its former name (the defense kind's evaluation attacks use it).
AttackParams = AttackSpec


class AttackParamsBase(EvasionAttackSpec):
    """Parameters every eps-bounded evasion attack shares."""

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

    def passes_per_sample(self) -> float:
        """Forward-and-backward passes per sample at one eps (an upper bound, for the cost estimate)."""
        values = self.model_dump()
        steps, restarts = values.get("steps") or 1, values.get("restarts") or 1
        passes = steps * restarts * values.get("binary_search_steps", 1)
        for key in ("queries", "max_queries"):
            passes = max(passes, values.get(key) or 0)
        return float(passes * values.get("eot_iter", 1))


class FgsmParams(AttackParamsBase):
    """FGSM (Goodfellow et al., 2015): one signed (linf) or normalised (l2) gradient step of size eps."""

    iterative: ClassVar[bool] = False

    name: Literal["fgsm"]


PgdStepSize = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class PgdParams(AttackParamsBase):
    """PGD (Madry et al., 2018). Defaults: 40 steps, step size 2.5 * eps / steps, random start, 1 restart."""

    budget_keys: ClassVar[tuple[str, ...]] = ("steps", "restarts")

    name: Literal["pgd"]
    steps: Annotated[int, Field(ge=1, le=10_000)] = 40
    step_size: PgdStepSize | None = Field(
        default=None, description="Absolute step size; default 2.5 * eps / steps for each eps."
    )
    random_start: bool = True
    restarts: Annotated[int, Field(ge=1, le=100)] = 1


class ApgdParams(AttackParamsBase):
    """APGD (Croce & Hein, 2020). Defaults: cross-entropy loss, 100 steps, 1 restart, rho 0.75.

    Targeted APGD uses the targeted DLR loss (set loss to "dlr"). eot_iter > 1 averages gradients over
    that many forward passes (expectation over transformation) for randomized models.
    """

    budget_keys: ClassVar[tuple[str, ...]] = ("steps", "restarts")

    name: Literal["apgd"]
    loss: Literal["ce", "dlr"] = "ce"
    steps: Annotated[int, Field(ge=1, le=10_000)] = 100
    restarts: Annotated[int, Field(ge=1, le=100)] = 1
    rho: Annotated[float, Field(gt=0, lt=1)] = 0.75
    eot_iter: Annotated[int, Field(ge=1, le=1000)] = 1

    @model_validator(mode="after")
    def _targeted_needs_dlr(self) -> Self:
        """The targeted variant of APGD is defined for the DLR loss."""
        if self.targeted and self.loss != "dlr":
            raise ValueError("targeted apgd uses the targeted DLR loss: set loss to 'dlr'")
        return self


class FabParams(AttackParamsBase):
    """FAB (Croce & Hein, 2020), minimum-norm. Defaults: 100 steps, 1 restart, alpha_max 0.1, eta 1.05,
    beta 0.9."""

    name: Literal["fab"]
    minimum_norm: ClassVar[bool] = True
    steps: Annotated[int, Field(ge=1, le=10_000)] = 100
    restarts: Annotated[int, Field(ge=1, le=100)] = 1
    alpha_max: Annotated[float, Field(gt=0, le=1)] = 0.1
    eta: Annotated[float, Field(ge=1, le=10)] = 1.05
    beta: Annotated[float, Field(gt=0, le=1)] = 0.9
    restart_eps: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None,
        description="Radius of random restarts; default 0.3 (linf) or 1.0 (l2) x the input range width.",
    )

    def passes_per_sample(self) -> float:
        """Two passes a step (the untargeted step adds a Jacobian), every restart."""
        return float(2 * self.steps * self.restarts)


class CarliniWagnerParams(AttackParamsBase):
    """Carlini-Wagner L2 (2017), minimum-norm. Defaults: 9 binary search steps, 10000 steps with early abort,
    learning rate 0.01, initial constant 0.001, confidence 0."""

    name: Literal["cw"]
    minimum_norm: ClassVar[bool] = True
    norm: Literal["l2"] = "l2"
    binary_search_steps: Annotated[int, Field(ge=1, le=50)] = 9
    steps: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.01
    initial_const: Annotated[float, Field(gt=0, le=1e6)] = 0.001
    confidence: Annotated[float, Field(ge=0, le=1e6)] = 0.0
    abort_early: bool = True


class DeepFoolParams(AttackParamsBase):
    """DeepFool (Moosavi-Dezfooli et al., 2016), minimum-norm, untargeted. Defaults: 50 steps, overshoot
    0.02, the 10 most likely classes as candidates."""

    name: Literal["deepfool"]
    minimum_norm: ClassVar[bool] = True
    norm: Literal["linf", "l2"] = "l2"
    steps: Annotated[int, Field(ge=1, le=10_000)] = 50
    overshoot: Annotated[float, Field(ge=0, le=1)] = 0.02
    candidates: Annotated[int, Field(ge=2, le=100_000)] = 10

    def passes_per_sample(self) -> float:
        """A gradient per candidate class each step (an upper bound: most samples cross early)."""
        return float(self.steps * self.candidates)

    @model_validator(mode="after")
    def _untargeted(self) -> Self:
        """DeepFool crosses the nearest boundary; it has no targeted form."""
        if self.targeted:
            raise ValueError("deepfool is untargeted only")
        return self


class SquareParams(AttackParamsBase):
    """Square Attack (Andriushchenko et al., 2020), black-box (queries only). Defaults: 5000 queries per
    sample, p_init 0.8, 1 restart."""

    name: Literal["square"]
    white_box: ClassVar[bool] = False
    needs_images: ClassVar[bool] = True
    queries: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    p_init: Annotated[float, Field(gt=0, le=1)] = 0.8
    restarts: Annotated[int, Field(ge=1, le=100)] = 1

    def passes_per_sample(self) -> float:
        """The query budget of every restart (an upper bound: a broken sample stops querying)."""
        return float(self.queries * self.restarts)


class HopSkipJumpParams(AttackParamsBase):
    """HopSkipJump (Chen et al., 2020), decision-based black-box, minimum-norm. Defaults: 20000 queries per
    sample, 40 iterations, gamma 1.0, 100 initial and at most 10000 evaluations per gradient estimate."""

    name: Literal["hopskipjump"]
    white_box: ClassVar[bool] = False
    minimum_norm: ClassVar[bool] = True
    norm: Literal["linf", "l2"] = "l2"
    max_queries: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    iterations: Annotated[int, Field(ge=1, le=10_000)] = 40
    gamma: Annotated[float, Field(gt=0, le=1000)] = 1.0
    init_evals: Annotated[int, Field(ge=1, le=100_000)] = 100
    max_evals: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    init_size: Annotated[int, Field(ge=1, le=100_000)] = 100


class AutoAttackParams(AttackParamsBase):
    """AutoAttack (Croce & Hein, 2020): APGD-CE, targeted APGD-DLR, targeted FAB and Square, each run only on
    the samples still robust. Defaults as published: version "standard", 100 iterations, 9 target classes,
    5000 Square queries; version "rand" (randomized models) runs APGD-CE and APGD-DLR with 20 EOT draws;
    version "fast" runs APGD-CE and targeted APGD-DLR on 4 target classes, the clean runner-up and the 3
    others MALT ranks closest (no FAB-T, no Square), and checks itself against "standard" on
    `fast_vs_standard` random samples."""

    ensemble: ClassVar[bool] = True
    # Target classes of version "fast" (at most n_target_classes): the runner-up, then MALT's closest.
    fast_targets: ClassVar[int] = 4

    name: Literal["autoattack"]
    version: Literal["standard", "rand", "fast"] = "standard"
    steps: Annotated[int, Field(ge=1, le=10_000)] = 100
    n_target_classes: Annotated[int, Field(ge=1, le=1000)] = 9
    square_queries: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    eot_iter: Annotated[int, Field(ge=1, le=1000)] = 20
    use_square: bool = True
    fast_vs_standard: Annotated[int, Field(ge=0, le=100_000)] | None = Field(
        default=None,
        description="Version fast: samples of the fast_vs_standard check (standard rerun on a random "
        "subset); default min(100, samples attacked); 0 skips the check; at most the samples evaluated.",
    )

    def passes_per_sample(self) -> float:
        """APGD-CE, APGD-T and FAB-T over the target classes, then Square's queries (fast: APGD-CE and
        APGD-T over its targets plus the ranking)."""
        if self.version == "fast":
            return float((self.steps + 1) * (1 + min(self.fast_targets, self.n_target_classes)) + 10)
        eot = self.eot_iter if self.version == "rand" else 1
        return float(4 * self.steps * self.n_target_classes * eot + self.square_queries)

    def uses_images(self) -> bool:
        """Square (versions standard and rand with use_square) needs image inputs."""
        return self.use_square and self.version != "fast"

    def extra_passes(self, n_samples: int) -> float:
        """Passes of the fast_vs_standard check: the standard version on its subset, at one eps."""
        if self.version != "fast" or self.fast_vs_standard == 0:
            return 0.0
        subset = min(100 if self.fast_vs_standard is None else self.fast_vs_standard, n_samples)
        standard = self.model_copy(update={"version": "standard"})
        return standard.passes_per_sample() * subset

    @model_validator(mode="after")
    def _untargeted(self) -> Self:
        """The ensemble is an untargeted evaluation (its targeted parts sweep target classes themselves)."""
        if self.targeted:
            raise ValueError("autoattack is untargeted; its targeted components sweep the top target classes")
        if self.fast_vs_standard is not None and self.version != "fast":
            raise ValueError("fast_vs_standard only applies to version 'fast'")
        return self


class PatchParams(EvasionAttackSpec):
    """Universal adversarial patch (Brown et al., 2017) trained with expectation over transformation.

    A physical-world attack: one square patch per scale (side = scale x the image's shorter side) is
    optimised on the first part of the samples under random rotation, scale, placement and brightness,
    and evaluated on the held-out rest under fresh transformations. No eps: the patch replaces pixels.
    """

    needs_images: ClassVar[bool] = True

    name: Literal["patch"]
    patch_scales: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1, max_length=8)]
    targeted: bool = False
    target_class: Annotated[int, Field(ge=0)] | None = None
    steps: Annotated[int, Field(ge=1, le=100_000)] = 500
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: Annotated[float, Field(gt=0, le=100)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    eot_samples: Annotated[int, Field(ge=1, le=256)] = 8
    rotation_deg: Annotated[float, Field(ge=0, le=180)] = 22.5
    scale_range: Annotated[list[Annotated[float, Field(gt=0, le=10)]], Field(min_length=2, max_length=2)] = [
        0.9,
        1.1,
    ]
    max_translation: Annotated[float, Field(ge=0, le=1)] = 0.2
    brightness: Annotated[float, Field(ge=0, le=1)] = 0.1
    holdout_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.5
    eval_transforms: Annotated[int, Field(ge=1, le=256)] = 8

    def passes_per_sample(self) -> float:
        """Every scale trains for steps x EOT draws x a batch (the whole run, charged per sample)."""
        return float(len(self.patch_scales) * self.steps * self.eot_samples * self.batch_size)

    @model_validator(mode="after")
    def _check(self) -> Self:
        """A targeted patch names its class; scales are distinct and the scale jitter is ordered."""
        if self.targeted and self.target_class is None:
            raise ValueError("a targeted patch needs target_class")
        if not self.targeted and self.target_class is not None:
            raise ValueError("target_class only applies when targeted is true")
        if len(set(self.patch_scales)) != len(self.patch_scales):
            raise ValueError("patch_scales must be distinct")
        if self.scale_range[0] > self.scale_range[1]:
            raise ValueError("scale_range must be [low, high] with low <= high")
        return self


EVASION_EXAMPLE: dict[str, Any] = {
    "kind": "evasion",
    "model_id": "mdl_0123456789abcdef01234567",
    "dataset_id": "builtin:digits-test",
    "seed": 0,
    "params": {
        "attacks": [
            {"name": "pgd", "norm": "linf", "eps": [0.05, 0.1, 0.2], "steps": 40, "random_start": True},
            {"name": "fgsm", "norm": "linf", "eps": [0.1]},
        ],
        "max_samples": 500,
        "batch_size": 256,
    },
}


class EvasionParams(BaseModel):
    """What an evasion job runs: a list of attacks over the first max_samples samples."""

    model_config = ConfigDict(extra="forbid")

    attacks: Annotated[list[AttackSpec], Field(min_length=1, max_length=16)]
    max_samples: Annotated[int, Field(ge=1, le=100_000)] = 500
    batch_size: Annotated[int, Field(ge=1, le=8192)] = 256
    sanity_runs: bool = Field(
        default=True,
        description="Run the checks that need extra attack runs (an unbounded attack on up to 100 samples, "
        "the first budgeted attack at twice its budget on up to 200, AutoAttack fast against standard); "
        "false leaves them out of the report's checks.",
    )


class EvasionJobSpec(JobSpecBase):
    """An evasion job: attack a model on a dataset and report robust accuracy per eps."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EVASION_EXAMPLE]})

    kind: Literal["evasion"]
    params: EvasionParams
