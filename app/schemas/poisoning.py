"""The poisoning kind: attacks at rates (the engine's registry names), detectors, the recipe, audit mode.

The detectors live in app.schemas.poisoning_detection, the scan mode's scanners in
app.schemas.poisoning_scan, params.repair in app.schemas.poisoning_repair."""

from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.schemas.common import JobSpecBase, ResourceId, TrainingParams
from app.schemas.poisoning_detection import PoisoningDetector
from app.schemas.poisoning_repair import RepairList, repair_problem
from app.schemas.poisoning_scan import (
    ScanList,
    scan_problem,
)

Rate = Annotated[float, Field(gt=0, lt=1, description="Poisoned share, strictly between 0 and 1.")]
Rates = Annotated[list[Rate], Field(min_length=1, max_length=16)]
ClassIndex = Annotated[int, Field(ge=0, le=1_000_000)]
BudgetEps = Annotated[
    float, Field(gt=0, le=1_000, allow_inf_nan=False, description="linf budget per poison.")
]


class _Closed(BaseModel):
    """A closed schema: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


class TriggerParams(_Closed):
    """A BadNets patch: size x size pixels at a corner, the center or (row, col); a solid value (default the
    top of the input range), a checkerboard, or a random pattern seeded by pattern_seed."""

    size: Annotated[int, Field(ge=1, le=4096)] = 2
    location: Literal["bottom_right", "bottom_left", "top_right", "top_left", "center"] = "bottom_right"
    row: Annotated[int, Field(ge=0, le=100_000)] | None = None
    col: Annotated[int, Field(ge=0, le=100_000)] | None = None
    value: Annotated[float, Field(allow_inf_nan=False)] | None = None
    pattern: Literal["solid", "checkerboard", "random"] = "solid"
    pattern_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        """An explicit position needs both coordinates."""
        if (self.row is None) != (self.col is None):
            raise ValueError("give both trigger row and col, or neither")
        return self


class PoisoningAttackBase(_Closed):
    """An attack's parameters and its facts, read by the submission checks and the engine (one place)."""

    backdoor: ClassVar[bool] = False
    clean_label: ClassVar[bool] = False
    needs_images: ClassVar[bool] = False
    needs_surrogate: ClassVar[bool] = False
    per_target: ClassVar[bool] = False
    rate_of: ClassVar[str] = "training_set"
    # At least this share of what the rate is a share of (the training set, or the target class for
    # clean-label backdoors) stays clean: the submission checks and the engine both hold rates to it.
    min_clean_share: ClassVar[float] = 0.1

    rate: Rates


class LabelFlipParams(PoisoningAttackBase):
    """Label flipping (Xiao et al. 2012; targeted as in Tolpegin et al. 2020): random (a uniformly drawn other
    label), targeted (source_class relabelled target_class), nearest (the clean surrogate's second most
    likely class). Defaults: random; targeted source 0, target 1. Rate: share of the training set."""

    name: Literal["label_flip"]
    mode: Literal["random", "targeted", "nearest"] = "random"
    source_class: ClassIndex = 0
    target_class: ClassIndex = 1

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        """A targeted flip moves one class onto another."""
        if self.mode == "targeted" and self.source_class == self.target_class:
            raise ValueError("source_class and target_class must differ")
        return self


class BadNetsParams(PoisoningAttackBase):
    """BadNets (Gu et al. 2017): a patch trigger stamped on a share of the training set, relabelled to
    target_class (all_to_one) or y + 1 mod K (all_to_all). Defaults: 2x2 at the bottom right, top of the
    input range, all_to_one, target class 0."""

    backdoor: ClassVar[bool] = True
    needs_images: ClassVar[bool] = True
    name: Literal["badnets"]
    trigger: TriggerParams = Field(default_factory=TriggerParams)
    target: Literal["all_to_one", "all_to_all"] = "all_to_one"
    target_class: ClassIndex = 0


class BlendedParams(PoisoningAttackBase):
    """Blended injection (Chen et al. 2017): (1 - alpha) x + alpha p with seeded noise or the uploaded pattern
    (params.pattern_dataset_id), relabelled; test_alpha blends at test time. Defaults: alpha 0.2, test_alpha =
    alpha, noise seeded 0, all_to_one to class 0."""

    backdoor: ClassVar[bool] = True
    name: Literal["blended"]
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.2
    test_alpha: Annotated[float, Field(gt=0, le=1)] | None = None
    pattern: Literal["noise", "uploaded"] = "noise"
    pattern_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    target: Literal["all_to_one", "all_to_all"] = "all_to_one"
    target_class: ClassIndex = 0


class LabelConsistentParams(PoisoningAttackBase):
    """Label-consistent backdoor (Turner et al. 2019), clean-label: target-class samples pushed away from
    their class with linf PGD (the evasion engine's) on a clean surrogate within eps, then triggered; labels
    untouched. Defaults: target class 0, eps 0.2, 20 steps, step size 2.5 eps / steps, a 2x2 trigger.
    Rate: share of the target class."""

    backdoor: ClassVar[bool] = True
    clean_label: ClassVar[bool] = True
    needs_images: ClassVar[bool] = True
    needs_surrogate: ClassVar[bool] = True
    rate_of: ClassVar[str] = "target_class"
    name: Literal["label_consistent"]
    target_class: ClassIndex = 0
    eps: BudgetEps = 0.2
    steps: Annotated[int, Field(ge=1, le=10_000)] = 20
    step_size: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    trigger: TriggerParams = Field(default_factory=TriggerParams)


class TargetedParams(PoisoningAttackBase):
    """Targeted clean-label attacks: `targets` independent held-out targets, each with its own poisons and a
    victim retrained from scratch; intended_class None is the clean surrogate's runner-up per target."""

    clean_label: ClassVar[bool] = True
    needs_surrogate: ClassVar[bool] = True
    per_target: ClassVar[bool] = True
    targets: Annotated[int, Field(ge=1, le=100)] = 5
    eps: BudgetEps = 0.1
    intended_class: ClassIndex | None = None


class FeatureCollisionParams(TargetedParams):
    """Feature collision / Poison Frogs (Shafahi et al. 2018): intended-class samples nearest the target moved
    within eps until their penultimate features on a clean surrogate collide with the target's. Defaults: 5
    targets, eps 0.1, 200 Adam steps at eps / 10."""

    name: Literal["feature_collision"]
    steps: Annotated[int, Field(ge=1, le=10_000)] = 200
    step_size: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class GradientMatchingParams(TargetedParams):
    """Gradient matching / Witches' Brew (Geiping et al. 2021): random intended-class samples perturbed within
    eps so their training gradient on a clean surrogate aligns with the target's adversarial gradient.
    Defaults: 5 targets, eps 0.1, 150 signed-Adam steps at eps / 10 (decayed at 3/8, 5/8, 7/8), 1 restart."""

    name: Literal["gradient_matching"]
    steps: Annotated[int, Field(ge=1, le=10_000)] = 150
    step_size: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    restarts: Annotated[int, Field(ge=1, le=16)] = 1


PoisoningAttack = Annotated[
    LabelFlipParams
    | BadNetsParams
    | BlendedParams
    | LabelConsistentParams
    | FeatureCollisionParams
    | GradientMatchingParams,
    Field(discriminator="name"),
]

ATTACK_SPECS: tuple[type[PoisoningAttackBase], ...] = get_args(get_args(PoisoningAttack)[0])


def spec_name(spec_type: type[BaseModel]) -> str:
    """The `name` literal of a spec class."""
    return str(get_args(spec_type.model_fields["name"].annotation)[0])


# The attacks with a trigger: params.repair runs on their victims.
BACKDOOR_ATTACKS = frozenset(spec_name(spec) for spec in ATTACK_SPECS if spec.backdoor)


class PoisoningTrainingParams(TrainingParams):
    """The victim's recipe: the shared fit loop's parameters and where the weights start."""

    init: Literal["random", "pretrained"] = Field(
        default="random", description="random: fresh weights; pretrained: the model's own weights."
    )
    epochs: Annotated[int, Field(ge=1, le=500)] = 30


class PoisoningParams(_Closed):
    """What a poisoning job runs. With attacks: train the architecture on each poisoned set; with detection
    only: audit the training set with the model's own weights; with scan only: scan the model under test
    for a backdoor on the clean held-out set (no training set)."""

    train_dataset_id: ResourceId | None = Field(
        default=None, description="The training set; required except in scan mode (params.scan alone)."
    )
    pattern_dataset_id: ResourceId | None = Field(
        default=None, description="An uploaded .npz whose x[0] is the blended pattern (pattern 'uploaded')."
    )
    training: PoisoningTrainingParams = Field(default_factory=PoisoningTrainingParams)
    attacks: Annotated[list[PoisoningAttack], Field(max_length=16)] = Field(default_factory=list)
    detection: Annotated[list[PoisoningDetector], Field(max_length=8)] = Field(default_factory=list)
    retrain_after_removal: bool = False
    repair: RepairList = Field(
        default_factory=list,
        description="Repair methods run on each backdoor attack's largest-rate victim (badnets, blended, "
        "label_consistent): the first half of the held-out set is the clean set, the second half measures.",
    )
    scan: ScanList = Field(
        default_factory=list,
        description="Scan mode: scanners run on the model under test with the held-out set as the clean set; "
        "no attacks, detection or training set.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        """Scan stands alone; audit needs a detector; removal needs attacks and detection."""
        if self.scan:
            others = bool(self.attacks or self.detection or self.retrain_after_removal or self.repair)
            datasets = self.train_dataset_id is not None or self.pattern_dataset_id is not None
            problem = scan_problem(self.scan, others, datasets)
            if problem:
                raise ValueError(problem)
            return self
        if self.train_dataset_id is None:
            raise ValueError("train_dataset_id is required unless the job is a scan (params.scan)")
        if not self.attacks and not self.detection:
            raise ValueError("give attacks, or detection for an audit of the training set (or both), or scan")
        if self.retrain_after_removal and not (self.attacks and self.detection):
            raise ValueError("retrain_after_removal needs attacks and detection")
        problem = repair_problem(self.repair, any(a.backdoor for a in self.attacks), BACKDOOR_ATTACKS)
        if problem:
            raise ValueError(problem)
        names = [d.name for d in self.detection]
        if len(set(names)) != len(names):
            raise ValueError("each detector may appear once")
        uploaded = any(getattr(a, "pattern", None) == "uploaded" for a in self.attacks)
        if uploaded and self.pattern_dataset_id is None:
            raise ValueError("pattern 'uploaded' needs params.pattern_dataset_id")
        if not uploaded and self.pattern_dataset_id is not None:
            raise ValueError("pattern_dataset_id is only read by a blended attack with pattern 'uploaded'")
        return self

    @property
    def audit(self) -> bool:
        """Audit mode: no attacks, detection on the tenant's own model and training set."""
        return not self.attacks and not self.scan

    @property
    def scan_mode(self) -> bool:
        """Scan mode: the model under test scanned for a backdoor on the clean held-out set."""
        return bool(self.scan)


POISONING_EXAMPLE: dict[str, Any] = {
    "kind": "poisoning",
    "model_id": "mdl_0123456789abcdef01234567",
    "dataset_id": "builtin:digits-test",
    "seed": 0,
    "params": {
        "train_dataset_id": "builtin:digits-train",
        "training": {
            "init": "random",
            "epochs": 30,
            "batch_size": 64,
            "optimizer": "adam",
            "learning_rate": 0.001,
        },
        "attacks": [
            {"name": "label_flip", "mode": "random", "rate": [0.1, 0.2, 0.4]},
            {
                "name": "badnets",
                "trigger": {"size": 2, "location": "bottom_right", "value": 1.0},
                "target": "all_to_one",
                "target_class": 0,
                "rate": [0.01, 0.05, 0.1],
            },
            {"name": "blended", "alpha": 0.2, "target_class": 0, "rate": [0.05]},
            {"name": "label_consistent", "target_class": 0, "eps": 0.2, "rate": [0.5]},
            {"name": "gradient_matching", "targets": 5, "eps": 0.1, "rate": [0.02]},
        ],
        "detection": [{"name": "activation_clustering"}, {"name": "spectral_signatures"}, {"name": "strip"}],
        "retrain_after_removal": True,
    },
}


class PoisoningJobSpec(JobSpecBase):
    """A poisoning job: plant poisons and backdoors in the training set, measure them and their detection;
    or audit a training set for poison."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [POISONING_EXAMPLE]})

    kind: Literal["poisoning"]
    params: PoisoningParams
