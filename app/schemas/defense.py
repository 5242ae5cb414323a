"""The defense kind: harden or wrap a model, then evaluate it adaptively.

These typed specs are the only description of each defense's and transform's parameters and facts: the
API validates with them, the worker reads the stored params back into them, and the engine's classes
(worker.engine.defense, registries keyed by these types) are built from them.
"""

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.schemas.common import JobSpecBase, Norm, ResourceId, Schedule
from app.schemas.defense_transforms import Budget, TransformParams
from app.schemas.evasion import AttackParams, AttackParamsBase, AutoAttackParams
from app.schemas.repair import BackdoorRepairParams


class _Closed(BaseModel):
    """A closed schema: unknown fields are a 422."""

    model_config = ConfigDict(extra="forbid")


# Sample passes of per-epoch monitoring (clean and PGD-10 accuracy on the monitor subset) per sample.
MONITOR_PASSES = 12


class DefenseFacts(_Closed):
    """Facts of a defense that the submission checks and the engine read (defaults: a training defense),
    and its cost in forward-backward sample passes."""

    trains: ClassVar[bool] = True
    # Runs of the evaluation's attacks: undefended, naive and adaptive (distillation adds the logits run).
    evaluation_runs: ClassVar[int] = 3

    name: str

    def training_passes(self, n_train: int, monitor_samples: int) -> float:
        """Forward-backward sample passes of hardening, baseline and monitoring included (none here)."""
        return 0.0

    def adaptive_draws(self) -> int:
        """Draws the adaptive run averages per step (EOT over a randomized defense; 1 otherwise)."""
        return 1

    def certification_passes(self, n_eval: int) -> float:
        """Sample passes of certification (randomized smoothing only)."""
        return 0.0

    @property
    def needs_weights(self) -> bool:
        """Whether the defense uses the uploaded model's weights (a wrapper does; a recipe may not)."""
        return True

    @property
    def randomized(self) -> bool:
        """Whether the deployed defense draws randomness per prediction (then attacks use EOT)."""
        return False

    def default_threat(self, input_range: Sequence[float]) -> tuple[Norm, list[float]]:
        """The norm and eps list evaluated when the evaluation names no attacks: linf 0.1 of the width."""
        return "linf", [0.1 * (input_range[1] - input_range[0])]

    def headline_eps(self) -> float | None:
        """The eps the headline is read at (a training eps), None for the evaluation's first."""
        return None


class DefenseTraining(DefenseFacts):
    """The recipe of a defense that trains: where weights start, the budget, the optimizer and schedule."""

    init: Literal["pretrained", "random"] = Field(
        default="pretrained",
        description="pretrained: fine-tune the model's weights; random: retrain its graph.",
    )
    epochs: Annotated[int, Field(ge=1, le=200)] = 20
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: Annotated[float, Field(gt=0, le=10)] = 0.001
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    schedule: Schedule = "constant"

    @property
    def needs_weights(self) -> bool:
        """Init "pretrained" starts from the uploaded weights."""
        return self.init == "pretrained"

    def passes_per_training_sample(self) -> float:
        """Forward-backward passes per training sample and epoch."""
        return 1.0

    def training_passes(self, n_train: int, monitor_samples: int) -> float:
        """Epochs over the training set, the clean baseline of init "random", and the monitoring."""
        baseline = self.epochs * n_train if self.init == "random" else 0
        monitor = self.epochs * monitor_samples * MONITOR_PASSES
        return self.epochs * n_train * self.passes_per_training_sample() + baseline + monitor


class AdversarialTrainingParams(DefenseTraining):
    """Adversarial training: pgd (Madry et al. 2018), trades (Zhang et al. 2019, beta), fast (Wong et al.
    2020, FGSM from a random start with step 1.25 eps and a catastrophic-overfitting guard). Defaults:
    pgd, linf, 10 steps of 2.5 eps / steps from a random start, clean_weight 0 (0.5 trains on clean and
    adversarial inputs equally), beta 6, a guard on 256 training samples."""

    name: Literal["adversarial_training"]
    method: Literal["pgd", "trades", "fast"] = "pgd"
    norm: Norm = "linf"
    eps: Budget
    steps: Annotated[int, Field(ge=1, le=100)] = 10
    step_size: Annotated[float, Field(gt=0, le=1_000, allow_inf_nan=False)] | None = None
    random_start: bool = True
    clean_weight: Annotated[float, Field(ge=0, le=1)] = 0.0
    beta: Annotated[float, Field(ge=0, le=100)] = 6.0
    guard_samples: Annotated[int, Field(ge=16, le=4096)] = 256

    def default_threat(self, input_range: Sequence[float]) -> tuple[Norm, list[float]]:
        """Evaluated at the training budget."""
        return self.norm, [self.eps]

    def passes_per_training_sample(self) -> float:
        """The attack's steps and the update (fast: one FGSM step and the update)."""
        return 2.0 if self.method == "fast" else float(self.steps + 2)

    def training_passes(self, n_train: int, monitor_samples: int) -> float:
        """As every training defense, plus fast's catastrophic-overfitting guard each epoch."""
        guard = self.epochs * self.guard_samples * 2 * MONITOR_PASSES if self.method == "fast" else 0
        return super().training_passes(n_train, monitor_samples) + guard

    def headline_eps(self) -> float | None:
        """The training eps."""
        return self.eps


class DistillationParams(DefenseTraining):
    """Defensive distillation (Papernot et al. 2016): the teacher trained at temperature T (or the upload),
    its soft labels at T, the student (init random by default) trained at T and deployed at T = 1.
    Evaluated on the softmax (naive) and on the logits (CE on logits / T, Carlini-Wagner margin)."""

    evaluation_runs: ClassVar[int] = 4

    name: Literal["distillation"]
    init: Literal["pretrained", "random"] = "random"
    temperature: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 100.0
    teacher: Literal["train", "upload"] = "train"

    @property
    def needs_weights(self) -> bool:
        """The uploaded weights start the student (init "pretrained") or are the teacher ("upload")."""
        return self.init == "pretrained" or self.teacher == "upload"

    def passes_per_training_sample(self) -> float:
        """The student's epochs, and the teacher's when it is trained."""
        return 2.0 if self.teacher == "train" else 1.0

    def default_threat(self, input_range: Sequence[float]) -> tuple[Norm, list[float]]:
        """linf 0.1 and 0.2 of the range's width."""
        width = input_range[1] - input_range[0]
        return "linf", [0.1 * width, 0.2 * width]


class PreprocessingParams(DefenseFacts):
    """Transforms in front of the model, in order; evaluated naively and with BPDA and EOT (eot_draws)."""

    trains: ClassVar[bool] = False
    name: Literal["preprocessing"]
    transforms: Annotated[list[TransformParams], Field(min_length=1, max_length=8)]
    eot_draws: Annotated[int, Field(ge=1, le=100)] = 10

    @property
    def randomized(self) -> bool:
        """Random when any transform is."""
        return any(type(t).randomized for t in self.transforms)

    def adaptive_draws(self) -> int:
        """EOT's draws when a transform is random."""
        return self.eot_draws if self.randomized else 1


class RandomizedSmoothingParams(DefenseTraining):
    """Randomized smoothing (Cohen et al. 2019): training under Gaussian noise sigma; certification with n0
    selection draws, n estimation draws and confidence 1 - alpha (abstaining below 1/2); certified accuracy
    at each l2 radius. Defaults: n0 100, n 1000, alpha 0.001, radii 0, 0.25, 0.5, 0.75, 1."""

    name: Literal["randomized_smoothing"]
    sigma: Budget
    n0: Annotated[int, Field(ge=1, le=10_000)] = 100
    n: Annotated[int, Field(ge=10, le=100_000)] = 1000
    alpha: Annotated[float, Field(gt=0, le=0.5)] = 0.001
    radii: Annotated[list[Annotated[float, Field(ge=0, le=1_000)]], Field(min_length=1, max_length=32)] = (
        Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    )
    eot_draws: Annotated[int, Field(ge=1, le=100)] = 10

    @field_validator("radii")
    @classmethod
    def _sorted(cls, radii: list[float]) -> list[float]:
        """The curve's radii in increasing order."""
        return sorted(radii)

    @property
    def randomized(self) -> bool:
        """The deployed classifier draws noise per prediction."""
        return True

    def adaptive_draws(self) -> int:
        """EOT's draws over the noise."""
        return self.eot_draws

    def certification_passes(self, n_eval: int) -> float:
        """n0 selection and n estimation draws per sample (forward only: a third of a pass each)."""
        return n_eval * (self.n0 + 2 * self.n) / 3.0

    def default_threat(self, input_range: Sequence[float]) -> tuple[Norm, list[float]]:
        """l2 at 0.25 and 0.5 of the range's width."""
        width = input_range[1] - input_range[0]
        return "l2", [0.25 * width, 0.5 * width]


# The defenses the defense engine runs (backdoor_repair runs its own engine, worker.engine.defense.repair).
EvaluatedDefenseSpec = (
    AdversarialTrainingParams | DistillationParams | PreprocessingParams | RandomizedSmoothingParams
)

DefenseSpec = Annotated[
    AdversarialTrainingParams
    | DistillationParams
    | PreprocessingParams
    | RandomizedSmoothingParams
    | BackdoorRepairParams,
    Field(discriminator="name"),
]


class DefenseEvaluation(_Closed):
    """How the hardened model is evaluated: evasion attacks (default AutoAttack at the defense's budget,
    version rand for random defenses), run on the undefended and the defended model, naive and adaptive."""

    attacks: Annotated[list[AttackParams], Field(min_length=1, max_length=16)] | None = None
    max_samples: Annotated[int, Field(ge=1, le=100_000)] = 500
    batch_size: Annotated[int, Field(ge=1, le=8192)] = 256
    sanity_runs: bool = True
    monitor_samples: Annotated[int, Field(ge=1, le=10_000)] = 200

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        """Only eps-bounded evasion attacks (no patches) evaluate a defense."""
        for attack in self.attacks or []:
            if not isinstance(attack, AttackParamsBase):
                raise ValueError(
                    f"{attack.name} is not an eps-bounded attack; a defense is evaluated within eps"
                )
        return self


def evaluation_attacks(
    defense: DefenseFacts, evaluation: DefenseEvaluation, input_range: Sequence[float]
) -> list[AttackParamsBase]:
    """The evaluation's attacks, or AutoAttack at the defense's default budget: version standard, or rand
    (APGD with EOT) for a randomized defense."""
    if evaluation.attacks:
        return [attack for attack in evaluation.attacks if isinstance(attack, AttackParamsBase)]
    norm, eps = defense.default_threat(input_range)
    version: Literal["rand", "standard"] = "rand" if defense.randomized else "standard"
    return [AutoAttackParams(name="autoattack", norm=norm, eps=eps, version=version)]


class DefenseParams(_Closed):
    """What a defense job runs: the defense, its training set (defenses that train, the clean set of a
    backdoor repair) and the evaluation (not for backdoor_repair, measured by clean accuracy and attack
    success before and after)."""

    train_dataset_id: ResourceId | None = None
    defense: DefenseSpec
    evaluation: DefenseEvaluation = Field(default_factory=DefenseEvaluation)

    @model_validator(mode="after")
    def _training_set(self) -> Self:
        """Defenses that train need a training set; preprocessing takes none."""
        trains = type(self.defense).trains
        if trains and self.train_dataset_id is None:
            raise ValueError(f"{self.defense.name} trains a model: give params.train_dataset_id")
        if not trains and self.train_dataset_id is not None:
            raise ValueError("preprocessing trains nothing: leave out train_dataset_id")
        # (The stored spec carries the default evaluation: only a changed one is refused.)
        if isinstance(self.defense, BackdoorRepairParams) and self.evaluation != DefenseEvaluation():
            raise ValueError(
                "backdoor_repair is measured by clean accuracy and attack success before and after, not "
                "by evasion attacks: leave out params.evaluation"
            )
        return self


DEFENSE_EXAMPLE: dict[str, Any] = {
    "kind": "defense",
    "model_id": "mdl_0123456789abcdef01234567",
    "dataset_id": "builtin:digits-test",
    "seed": 0,
    "params": {
        "train_dataset_id": "builtin:digits-train",
        "defense": {
            "name": "adversarial_training",
            "method": "pgd",
            "norm": "linf",
            "eps": 0.1,
            "steps": 10,
            "epochs": 20,
            "init": "pretrained",
        },
        "evaluation": {
            "attacks": [{"name": "autoattack", "norm": "linf", "eps": [0.05, 0.1, 0.2]}],
            "max_samples": 500,
        },
    },
}


class DefenseJobSpec(JobSpecBase):
    """A defense job: harden or wrap a model, hand it back as a derived model, evaluate it adaptively."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [DEFENSE_EXAMPLE]})

    kind: Literal["defense"]
    params: DefenseParams
