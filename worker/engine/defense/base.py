"""The defense interface: harden a model, then say how an adaptive attacker attacks the result."""

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from worker.engine.defense.evaluation import AttackRun, Classify
from worker.engine.defense.monitor import EpochMonitor
from worker.engine.defense.spec import FromSpec, check_range
from worker.engine.progress import ProgressTracker
from worker.engine.training.fit import FitHistory, fit
from worker.engine.training.recipe import OptimizerName, ScheduleName, TrainingRecipe

Init = Literal["pretrained", "random"]
MAX_EPOCHS = 200
MAX_STEPS = 100


@dataclass
class DefenseContext:
    """What a defense works with: the model as uploaded, fresh trainable copies, data and settings.

    `undefended` is the model as uploaded (None for an architecture without weights: then only a defense
    that trains from fresh weights runs). `trainable(init)` returns a new trainable module: the uploaded
    model's graph with its weights ("pretrained") or re-initialised ("random"). `monitor` is the held-out
    subset for training curves.
    """

    undefended: nn.Module | None
    trainable: Callable[[Init], nn.Module] | None
    train: tuple[np.ndarray, np.ndarray] | None
    monitor: tuple[np.ndarray, np.ndarray]
    input_range: tuple[float, float]
    sample_shape: tuple[int, ...]
    num_classes: int
    seed: int
    device: torch.device
    tracker: ProgressTracker

    def fresh(self, init: Init) -> nn.Module:
        """A new trainable module on the job's device."""
        if self.trainable is None:
            raise ValueError(
                "this defense trains a model, but the model cannot be trained (no trainable graph)"
            )
        return self.trainable(init).to(self.device)

    def uploaded(self) -> nn.Module:
        """The model as uploaded, with its weights; ValueError for an architecture without weights."""
        if self.undefended is None:
            raise ValueError("the model has no weights: this defense needs the uploaded model's weights")
        return self.undefended

    def training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """The training set; ValueError without one."""
        if self.train is None:
            raise ValueError("this defense trains a model and needs train_dataset_id")
        return self.train


@dataclass
class Baseline:
    """The undefended side of the evaluation when the job trains it (init "random").

    `model` is the architecture trained from the same fresh weights, on the same training set, with the
    defense's recipe and seed and plain cross-entropy (no defense); `training` describes that run.
    """

    model: nn.Module
    training: dict[str, Any]


@dataclass
class Hardened:
    """What hardening produced.

    `model` is the deployable classifier: newly trained weights to export (`trained`), or the base model
    itself (a preprocessing defense, whose registered model is the base graph plus `preprocessing`).
    `baseline` is the undefended side of the evaluation when it had to be trained (init "random").
    """

    model: nn.Module
    trained: bool
    preprocessing: list[dict[str, Any]] | None = None
    training: dict[str, Any] | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    baseline: Baseline | None = None


@dataclass
class Inspection:
    """What a defense measures on its final model besides the attacks (certificates, saturation)."""

    sections: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TrainingFields:
    """The training recipe of a defense that trains (published defaults: Adam, 1e-3, 20 epochs)."""

    init: Init = "pretrained"
    epochs: int = 20
    batch_size: int = 64
    optimizer: OptimizerName = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: ScheduleName = "constant"

    @property
    def needs_weights(self) -> bool:
        """Whether the defense starts from the uploaded weights (init "pretrained")."""
        return self.init == "pretrained"

    def check_training(self) -> None:
        """Validate the recipe's limits."""
        if self.init not in ("pretrained", "random"):
            raise ValueError(f"init must be 'pretrained' or 'random', got {self.init!r}")
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        check_range("batch_size", self.batch_size, 1, 4096)

    def recipe(self) -> TrainingRecipe:
        """The fit loop's recipe."""
        return TrainingRecipe(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
        )


def check_budget(label: str, value: float, input_range: tuple[float, float]) -> None:
    """A budget (eps, sigma) must be positive and at most the width of the input range."""
    width = input_range[1] - input_range[0]
    if not (math.isfinite(value) and 0 < value <= width):
        raise ValueError(
            f"{label} must lie in (0, {width:g}] for the input range {list(input_range)}, got {value}"
        )


def curve(history: FitHistory, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training curve rows: the fit loop's loss and rate merged with the monitor's metrics by epoch."""
    measured = {row["epoch"]: row for row in rows}
    return [{**record.as_dict(), **measured.get(record.epoch, {})} for record in history.epochs]


class Defense(FromSpec):
    """Base class of defenses; subclasses are frozen dataclasses built with `from_spec`.

    Facts: `trains` (the defense trains a model and needs a training set and a trainable graph).
    """

    name: ClassVar[str]
    trains: ClassVar[bool] = True

    @property
    def needs_weights(self) -> bool:
        """Whether the defense uses the uploaded model's weights (a wrapper does; a recipe may not)."""
        return True

    def validate(self, sample_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """Raise ValueError when the defense does not fit the model's inputs."""

    @property
    def randomized(self) -> bool:
        """Whether the deployed defense draws randomness per prediction (then attacks use EOT)."""
        return False

    def default_threat(self, input_range: tuple[float, float]) -> tuple[str, list[float]]:
        """The norm and eps list evaluated when the evaluation names none."""
        width = input_range[1] - input_range[0]
        return "linf", [0.1 * width]

    def headline_eps(self) -> float | None:
        """The eps the headline figure is read at (the training eps), None for the evaluation's first."""
        return None

    def training_units(self, n_train: int) -> float:
        """Work units of hardening, for progress weighting."""
        return 0.0

    def harden(self, context: DefenseContext) -> Hardened:
        """Train or wrap the model."""
        raise NotImplementedError

    def deployed(self, classify: Classify, context: DefenseContext) -> Classify:
        """The deployed classifier around the final model's classifier (preprocessing in front)."""
        return classify

    def inspect(
        self, final: nn.Module, x: np.ndarray, y: np.ndarray, context: DefenseContext
    ) -> "Inspection":
        """Report sections, checks and artifact arrays measured on the final model and the evaluation set."""
        return Inspection()

    def runs(
        self, final: nn.Module, attacks: list[dict[str, Any]], context: DefenseContext
    ) -> list[AttackRun]:
        """The naive and adaptive attack runs against the final (exported) model."""
        return [AttackRun("adaptive", "the hardened model's logits", final, attacks, sanity_runs=True)]


def train_baseline(context: DefenseContext, recipe: TrainingRecipe) -> Baseline:
    """The undefended baseline of a random init: the architecture from the same fresh weights, trained on
    the same data with the defense's recipe and seed and plain cross-entropy (the fit loop, no defense)."""
    model = context.fresh("random")
    x, y = context.training_set()
    monitor = EpochMonitor(*context.monitor, budget=None, device=context.device, seed=context.seed)
    history = fit(
        model,
        x,
        y,
        recipe=recipe,
        seed=context.seed,
        device=context.device,
        on_epoch=monitor,
        progress=context.tracker,
        stage="undefended baseline",
    )
    training = {
        "init": "random",
        "loss": "cross-entropy (no defense)",
        "seed": context.seed,
        "recipe": dataclasses.asdict(recipe),
        "epochs_run": len(history.epochs),
        "curve": curve(history, monitor.rows),
    }
    return Baseline(model.eval(), training)
