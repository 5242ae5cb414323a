"""The defense report: the defense, its training, the exported model evaluated adaptively beside the
undefended one, the headline, and method sections (certification, softmax saturation)."""

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from app.schemas.reports.envelope import Closed, MethodParams, Open, ReportEnvelope, Share, WorstCaseRow
from app.schemas.reports.evasion import EvasionAttack
from app.schemas.reports.repair import RepairSection


class DefenseSettings(Open):
    """The defense as it ran: its name and every parameter, defaults resolved."""

    name: str


class CurveRow(Open):
    """One training epoch: the fit loop's loss and learning rate, and what the monitor measured."""

    epoch: int
    loss: float
    learning_rate: float


class AttackBudget(Closed):
    """The training attack of adversarial training."""

    norm: str
    eps: float
    steps: int
    step_size: float
    random_start: bool


class OverfittingGuard(Closed):
    """Fast adversarial training's guard against catastrophic overfitting."""

    metric: str
    fired: bool
    training_attack_accuracy_at_start: float | None
    fired_at: dict[str, Any] | None
    kept_epoch: int | None


class TrainingRecord(Closed):
    """How the defended model was trained (None for a preprocessing defense, which trains nothing)."""

    method: str | None = Field(default=None, description="Adversarial training: pgd, trades or fast.")
    budget: AttackBudget | None = None
    sigma: float | None = Field(default=None, description="Randomized smoothing: the noise level.")
    temperature: float | None = Field(default=None, description="Distillation: the temperature.")
    teacher: str | None = None
    teacher_curve: list[CurveRow] | None = None
    curve: list[CurveRow]
    epochs_run: int
    stopped_early: bool | None = None
    best_epoch: int | None = None
    monitor: str
    guard: OverfittingGuard | None = None


class UndefendedEvaluation(Closed):
    """The undefended model (as uploaded, or retrained without the defense) under the same attacks."""

    source: Literal["model_under_test", "trained_baseline"] | None = None
    description: str | None = Field(default=None, description="What the undefended side is, for people.")
    training: dict[str, Any] | None = Field(
        default=None, description="A trained baseline's training record (its curve and recipe)."
    )
    clean_accuracy: Share
    attacks: list[EvasionAttack]
    worst_case: list[WorstCaseRow]


class AttackRunView(Closed):
    """Attacks on one view of the defended model (naive: the defense ignored; adaptive: BPDA, EOT, logits)."""

    role: Literal["naive", "adaptive"]
    view: str
    attacks: list[EvasionAttack]
    worst_case: list[WorstCaseRow]


class DefendedWorstCase(Closed):
    """Per-sample worst cases on the deployed model: over naive runs, adaptive runs, and every run."""

    naive: list[WorstCaseRow]
    adaptive: list[WorstCaseRow]
    all: list[WorstCaseRow]


class DefendedEvaluation(Closed):
    """The deployed defended model: clean accuracy, each run, the worst cases."""

    clean_accuracy: Share
    runs: list[AttackRunView]
    worst_case: DefendedWorstCase


class EvaluationSection(Closed):
    """Every figure measured on the deployed model (the exported ONNX through onnxruntime)."""

    n_samples: int
    undefended: UndefendedEvaluation
    defended: DefendedEvaluation
    attacks_requested: list[MethodParams]
    undefended_model: str
    max_samples: int


class RobustAccuracyRow(Closed):
    """Robust accuracy at one (norm, eps), undefended beside defended (naive, adaptive, worst case)."""

    norm: str
    eps: float
    undefended: Share | None
    defended_naive: Share | None
    defended_adaptive: Share | None
    defended_worst_case: Share


class Headline(Closed):
    """The figure to act on: the defended model's worst case over every attack at one eps."""

    norm: str
    eps: float
    clean_accuracy: Share
    robust_accuracy: Share
    naive_robust_accuracy: Share | None
    undefended_clean_accuracy: Share
    undefended_robust_accuracy: Share | None


class CertifiedRadius(Closed):
    """Share of samples certified correct at an l2 radius."""

    radius: float
    certified_accuracy: Share


class Certification(Closed):
    """Randomized smoothing's certificates (Cohen et al. 2019) on the evaluation set."""

    sigma: float
    n0: int
    n: int
    alpha: float
    n_samples: int
    certified_accuracy: list[CertifiedRadius]
    abstain_rate: Share
    mean_certified_radius: float
    smoothed_clean_accuracy: Share
    smoothed_abstain_rate: Share


class SoftmaxSaturation(Closed):
    """Distillation: how often the deployed softmax is saturated (its gradients vanish)."""

    saturated_share: Share
    median_logit_gap: float
    n_samples: int


class DefenseReport(ReportEnvelope):
    """A defense job's report: the hardened or defended model, evaluated adaptively; a backdoor repair
    instead has the `repair` section (no evasion evaluation, robust accuracy or headline)."""

    kind: Literal["defense"]
    defense: DefenseSettings
    training: TrainingRecord | None
    evaluation: EvaluationSection | None = None
    robust_accuracy_vs_eps: list[RobustAccuracyRow] | None = None
    headline: Headline | None = None
    preprocessing: list[MethodParams] | None = Field(
        description="A defended model's transforms, run in front of its graph (None for a trained defense)."
    )
    certification: Certification | None = None
    softmax_saturation: SoftmaxSaturation | None = None
    repair: RepairSection | None = Field(
        default=None,
        description="backdoor_repair: the figures before and after the repair (its only section).",
    )

    @model_validator(mode="after")
    def _sections(self) -> Self:
        """A repair has its repair section and no evaluation; every other defense the reverse."""
        repair = self.defense.name == "backdoor_repair"
        evaluated = (self.evaluation, self.robust_accuracy_vs_eps, self.headline)
        if repair and (self.repair is None or any(part is not None for part in evaluated)):
            raise ValueError("a backdoor_repair report has a repair section and no evasion evaluation")
        if not repair and (self.repair is not None or any(part is None for part in evaluated)):
            raise ValueError(
                f"a {self.defense.name} report has evaluation, robust_accuracy_vs_eps and headline, no repair"
            )
        return self
