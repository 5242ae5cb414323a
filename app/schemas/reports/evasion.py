"""The evasion report: clean accuracy, each attack's figures per eps (or per patch scale), the worst case."""

from typing import Annotated, Any, Literal

from pydantic import Field

from app.schemas.reports.envelope import (
    Closed,
    InputRange,
    MethodParams,
    Open,
    ReportEnvelope,
    Share,
    WorstCaseRow,
)


class EpsResult(Open):
    """An attack's figures at one eps, measured by the evaluator on the model under test.

    Rates and perturbation statistics are over the attacked samples (clean-correct, and for a fixed
    target not already of it); None when there are none. Attacks add what depends on eps (PGD's
    `step_size`, APGD's `initial_step_size`, AutoAttack's per-component `breakdown`).
    """

    eps: float
    robust_accuracy: Share = Field(description="Share of all evaluated samples still classified correctly.")
    attack_success_rate: Share | None
    mean_perturbation: float | None
    median_perturbation: float | None
    max_perturbation: float | None
    n_attacked: int
    n_succeeded: int
    seconds: float
    mean_queries: float | None = Field(
        default=None, description="Black-box attacks: model queries per sample."
    )
    median_queries: float | None = None
    max_queries: int | None = None
    total_queries: int | None = None
    step_size: float | None = None
    initial_step_size: float | None = None
    breakdown: dict[str, Any] | None = Field(
        default=None, description="AutoAttack: samples each component broke first, and components skipped."
    )
    attack_reported_robust_accuracy: Share | None = Field(
        default=None,
        description="Defense evaluations: the figure on the attacked view, before the evaluator "
        "re-measured it on the deployed model.",
    )


class EvasionAttack(Closed):
    """One gradient or query attack: its facts, its effective parameters and one row per eps."""

    name: str
    norm: Literal["linf", "l2"]
    targeted: bool
    target_mode: Literal["least_likely", "random", "fixed"] | None
    threat_model: Literal["white-box", "black-box"]
    iterative: bool
    ensemble: bool
    minimum_norm: bool
    n_samples: int
    n_attacked: int
    params: MethodParams
    results: list[EpsResult]


class PatchResult(Closed):
    """The patch at one scale, trained on one split, evaluated over random placements on the other."""

    patch_scale: float
    patch_side: int
    success_rate: Share | None
    robust_accuracy: Share
    clean_accuracy: Share
    n_eval: int
    n_attacked: int
    n_train: int
    png_base64: str | None = Field(default=None, description="The patch as a PNG (1 or 3 channels).")
    seconds: float


class PatchAttack(Closed):
    """The adversarial patch (Brown et al. 2017): a physical-world attack, one row per patch scale."""

    name: Literal["patch"]
    norm: Literal["patch"]
    targeted: bool
    target_mode: Literal["fixed"] | None
    threat_model: Literal["physical"]
    params: MethodParams
    results: list[PatchResult]


# An attack entry, told apart by its threat model (a patch is the physical one).
AnyEvasionAttack = Annotated[EvasionAttack | PatchAttack, Field(discriminator="threat_model")]


class EvasionReport(ReportEnvelope):
    """An evasion job's report: the model attacked at test time within each attack's budget."""

    kind: Literal["evasion"]
    n_samples: int
    clean_accuracy: Share
    input_range: InputRange
    attacks: list[AnyEvasionAttack]
    worst_case: list[WorstCaseRow]
