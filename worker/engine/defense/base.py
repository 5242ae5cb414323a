"""The defense interface: harden a model, then say how an adaptive attacker attacks the result."""

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from app.schemas.defense import DefenseFacts, DefenseTraining
from app.schemas.evasion import AttackParamsBase
from worker.engine.defense.evaluation import AttackRun, Classify
from worker.engine.defense.monitor import EpochMonitor
from worker.engine.progress import ProgressTracker
from worker.engine.training.fit import FitHistory, fit
from worker.engine.training.recipe import TrainingRecipe

Init = Literal["pretrained", "random"]


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


def training_recipe(spec: DefenseTraining) -> TrainingRecipe:
    """The fit loop's recipe of a defense that trains."""
    return TrainingRecipe(
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        optimizer=spec.optimizer,
        learning_rate=spec.learning_rate,
        momentum=spec.momentum,
        weight_decay=spec.weight_decay,
        schedule=spec.schedule,
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


S = TypeVar("S", bound=DefenseFacts)


class Defense(Generic[S]):
    """Base class of defenses: each subclass is built from its typed spec (`spec_type`, the registry's key)
    and reads its parameters and facts (trains, needs_weights, randomized, default threat) from it."""

    spec_type: ClassVar[type[DefenseFacts]]

    def __init__(self, spec: S) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        """The defense's enumerated name."""
        return self.spec.name

    def validate(self, sample_shape: tuple[int, ...], input_range: tuple[float, float]) -> None:
        """Raise ValueError when the defense does not fit the model's inputs."""

    def describe(self) -> dict[str, Any]:
        """The defense as it runs, every parameter resolved, for the report."""
        return self.spec.model_dump(mode="json")

    def training_units(self, n_train: int) -> float:
        """Work units of hardening, for progress weighting."""
        return 0.0

    def certification_units(self, n_eval: int) -> float:
        """Work units of what `inspect` measures besides the attacks (certification draws)."""
        return 0.0

    def harden(self, context: DefenseContext) -> Hardened:
        """Train or wrap the model."""
        raise NotImplementedError

    def deployed(self, classify: Classify, context: DefenseContext, stream: int | None = None) -> Classify:
        """The deployed classifier around the final model's classifier (preprocessing in front); a random
        one draws from `stream` (default: the judge's, preprocessing.pipeline.DEPLOYED_STREAM)."""
        return classify

    def inspect(
        self, final: nn.Module, x: np.ndarray, y: np.ndarray, context: DefenseContext
    ) -> "Inspection":
        """Report sections, checks and artifact arrays measured on the final model and the evaluation set."""
        return Inspection()

    def runs(
        self, final: nn.Module, attacks: list[AttackParamsBase], context: DefenseContext
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
