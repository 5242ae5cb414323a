"""The poisoning report: a clean baseline, each attack at each rate, detection; or an audit."""

from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from app.schemas.reports.envelope import Closed, InputRange, MethodParams, Open, ReportEnvelope, Share


class ClassVerdict(Closed):
    """A detector's gate on one class: its size, its suspects, their own-class share, flagged or not."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    class_: int = Field(alias="class")
    n_samples: int
    n_suspects: int
    own_share: float | None
    flagged: bool


class Suspect(Closed):
    """An audited training sample, most suspicious first."""

    index: int
    label: int
    score: float


class AfterRemoval(Closed):
    """The victim retrained without what the detector flagged (means over trials for per-target attacks)."""

    n_removed: float
    poisons_left: float
    clean_accuracy: Share
    attack_success_rate: float | None
    accuracy_drop: float | None = None
    source_to_target_rate: Share | None = None
    source_class_accuracy: Share | None = None
    n_triggered: int | None = None
    predicted: int | None = None


class DetectorRow(Open):
    """A detector's finding on one training set: flagged classes, suspects, per-class verdicts.

    On the clean baseline and in an audit it carries its `params` and `paper`; in an attack's row its
    precision, recall and F1 against the known poisons; in an audit the `top_suspects`. Detectors add
    their own details (the layer read and why, feature dimensions, STRIP's inference figures).
    """

    name: str
    flagged_classes: list[int] | None = None
    n_suspected: float
    classes: list[ClassVerdict] | None = None
    params: MethodParams | None = None
    paper: str | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    n_true_positives: int | None = None
    trials: int | None = Field(default=None, description="Per-target attacks: trials averaged.")
    after_removal: AfterRemoval | None = None
    top_suspects: list[Suspect] | None = None


class Trial(Closed):
    """One target sample of a per-target attack (feature collision, gradient matching)."""

    target: int
    intended: int
    predicted: int
    success: bool
    clean_accuracy: Share
    baseline_predicted: int


class RateResult(Closed):
    """An attack at one poisoning rate: the victim trained on the poisoned set, measured on held-out data."""

    rate: float
    n_poisoned: int
    expected_poisons: int
    clean_accuracy: Share
    baseline_clean_accuracy: Share
    clean_accuracy_drop: float
    attack_success_rate: float | None = Field(
        description="Backdoors: triggered inputs classified as intended; per-target: targets hit; label "
        "flips: the accuracy drop (or source-to-target rate when targeted)."
    )
    baseline_attack_success_rate: float | None = None
    max_perturbation: float
    labels_changed: int
    changed_outside_declared: int
    in_range: bool
    seconds: float
    accuracy_drop: float | None = None
    source_to_target_rate: Share | None = None
    source_class_accuracy: Share | None = None
    n_triggered: int | None = None
    trials: list[Trial] | None = None
    detection: list[DetectorRow]


class TargetSample(Closed):
    """A held-out sample a per-target attack tries to make the victim misclassify."""

    index: int
    label: int
    intended: int


class SamplePicture(Closed):
    """A poisoned training sample beside its original, as base64 PNGs."""

    index: int
    label: int
    poisoned_label: int
    original_png: str
    poisoned_png: str


class VictimRepairFigures(Closed):
    """A model on the measurement half of the held-out set: clean accuracy and the real trigger's success."""

    clean_accuracy: Share
    attack_success_rate: Share | None


class AttackRepair(Closed):
    """A repair method on the attack's largest-rate victim: before and after, measured by onnxruntime on the
    exported models, on the held-out samples the repair never saw."""

    name: str
    paper: str
    params: MethodParams
    scan_steps: int
    n_clean: int = Field(description="Held-out samples given to the repair as its clean set.")
    n_measured: int = Field(description="The other held-out samples, measuring before and after.")
    before: VictimRepairFigures
    after: VictimRepairFigures
    repair: dict[str, Any] = Field(description="What the method did: pruned neurons, epochs, details.")


class PoisoningAttack(Closed):
    """One poisoning attack: its facts and parameters, one row per rate, artifacts of the largest rate."""

    name: str
    paper: str
    threat_model: str
    params: MethodParams
    clean_label: bool
    backdoor: bool
    per_target: bool
    rate_of: str = Field(description="What the rate is a share of (the training set, or a class).")
    results: list[RateResult]
    targets: list[TargetSample] | None = None
    poisoned_set_artifact: str | None = None
    trigger_png: str | None = None
    trigger_artifact: str | None = None
    samples: list[SamplePicture] | None = None
    repair: list[AttackRepair] | None = Field(
        default=None, description="params.repair on a backdoor's largest-rate victim, per method."
    )


class Baseline(Closed):
    """The victim trained on the clean set with the same recipe and seed."""

    clean_accuracy: Share
    per_class_accuracy: list[Share | None]
    training_curve: list[dict[str, float]]


class ModelAccuracy(Closed):
    """A model's accuracy on held-out data and on the training set under suspicion (none in a scan)."""

    held_out: Share
    training_set: Share | None = None


class ScanClass(Closed):
    """A class in a scan: reversed trigger's mask l1 norm, anomaly index, flag, success on clean inputs."""

    label: int
    mask_l1: float
    anomaly_index: float
    flagged: bool
    trigger_success: Share


class ScannerSection(Closed):
    """One scanner's finding on the model: the statistic and threshold, each class, and what to do."""

    name: str
    paper: str
    params: MethodParams
    white_box: bool
    statistic: str
    threshold: float
    flagged_classes: list[int]
    triggers_shown: list[int]
    classes: list[ScanClass]
    advice: str
    details: dict[str, Any]


class PoisoningReport(ReportEnvelope):
    """A poisoning job's report.

    `mode` attack: a clean baseline, each attack at each rate, detection on every poisoned victim
    (`training`, `surrogate_seed`, `baseline`, `retrain_after_removal`, `attacks`). `mode` audit: the
    tenant's own model and training set, detection only (`model_accuracy`, `suspected_classes`,
    `n_suspected`). `mode` scan: the model under test scanned on the clean held-out set (`scanners`,
    `suspected_classes`, `verdict`).
    """

    kind: Literal["poisoning"]
    mode: Literal["attack", "audit", "scan"]
    n_train: int
    n_eval: int
    num_classes: int
    input_shape: list[int]
    input_range: InputRange
    detectors: list[DetectorRow]
    training: dict[str, Any] | None = Field(default=None, description="Attack mode: the victim's recipe.")
    surrogate_seed: int | None = None
    baseline: Baseline | None = None
    retrain_after_removal: bool | None = None
    repair_clean_share: Share | None = Field(
        default=None,
        description="With params.repair: the held-out share (its first samples) repairs train on.",
    )
    attacks: list[PoisoningAttack] | None = None
    model_accuracy: ModelAccuracy | None = None
    suspected_classes: list[int] | None = None
    n_suspected: int | None = None
    scanners: list[ScannerSection] | None = Field(
        default=None, description="Scan mode: each scanner's finding."
    )
    verdict: str | None = Field(default=None, description="Scan mode: backdoor suspected or not.")

    @model_validator(mode="after")
    def _sections_of_the_mode(self) -> Self:
        """Each mode carries its own sections."""
        needs = {
            "attack": ("baseline", "attacks", "training"),
            "audit": ("model_accuracy",),
            "scan": ("scanners",),
        }
        needed = needs[self.mode]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a poisoning report in {self.mode} mode needs {', '.join(missing)}")
        return self
