"""The repair interface: what a method reads (the model's graph, a small clean set) and what it returns."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from app.schemas.repair_methods import (
    FinePruningMethod,
    FineTuningMethod,
    NeuralCleanseMethod,
    RepairMethodSpecT,
)
from worker.engine.defense.repair.units import Unit
from worker.engine.from_spec import FromSpec
from worker.engine.models.normalization import Normalized
from worker.engine.models.onnx_graph import OnnxGraphModule
from worker.engine.poisoning.attacks.triggers import Trigger
from worker.engine.progress import ProgressTracker
from worker.engine.training.fit import FitHistory, fit
from worker.engine.training.recipe import TrainingRecipe

_Trains = FineTuningMethod | NeuralCleanseMethod | FinePruningMethod
# Reversed triggers for a model: Neural Cleanse run on it, {class: trigger}.
ReverseTriggers = Callable[[nn.Module], dict[int, Trigger]]


@dataclass
class RepairContext:
    """The model's trainable graph (weights as uploaded), a clean labelled set, and the run's settings.

    `normalization` is the model's declared input normalization (the graph sees normalized inputs);
    `reverse` reverse-engineers triggers on a module (Neural Cleanse), for unlearning.
    """

    graph: OnnxGraphModule
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_range: tuple[float, float]
    normalization: dict[str, list[float]] | None = None
    reverse: ReverseTriggers | None = None
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: ProgressTracker | None = None

    def model(self) -> nn.Module:
        """The graph on inputs in the input range (behind the declared normalization)."""
        norm = self.normalization
        if not norm:
            return self.graph
        return Normalized(self.graph, norm["mean"], norm["std"], self.x.ndim - 1)

    def train(self, recipe: TrainingRecipe, x: np.ndarray, y: np.ndarray, stage: str) -> FitHistory:
        """Fine-tune the graph in place on (x, y) with the shared fit loop."""
        return fit(
            self.model(),
            x,
            y,
            recipe=recipe,
            seed=self.seed,
            device=self.device,
            progress=self.progress,
            stage=stage,
        )

    @torch.no_grad()
    def accuracy(self, model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of a module (eval mode) on (x, y)."""
        model.eval()
        logits = model(torch.as_tensor(x, device=self.device))
        return float((logits.argmax(1).cpu().numpy() == y).mean())


@dataclass
class RepairResult:
    """What the method did: pruned neurons per layer value, the fine-tuning curve, method details."""

    pruned: dict[Unit, list[int]] = field(default_factory=dict)
    history: FitHistory | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Report fields: pruned neurons per layer, epochs trained and the method's details."""
        return {
            "pruned": {
                unit.value: {"pruned": len(ch), "of": unit.channels} for unit, ch in self.pruned.items()
            },
            "fine_tuning_epochs": len(self.history.epochs) if self.history else 0,
            **self.details,
        }


class Repair(FromSpec, ABC):
    """Base class of repair methods, built from the method's typed spec (`spec_type`: its parameters and
    their published defaults)."""

    spec_type: ClassVar[type[RepairMethodSpecT]]
    spec: RepairMethodSpecT
    paper: ClassVar[str]

    def units_of_work(self, n: int) -> float:
        """Progress units the method spends on n clean samples (fine-tuning epochs x samples by default)."""
        return float(getattr(self.spec, "epochs", 0)) * n

    @abstractmethod
    def repair(self, context: RepairContext) -> RepairResult:
        """Change the context's graph in place and say what was done."""


def recipe(spec: _Trains) -> TrainingRecipe:
    """The fine-tuning recipe of a repair method that trains (Adam, constant rate): its spec's epochs,
    learning_rate and batch_size."""
    return TrainingRecipe(
        epochs=int(spec.epochs), learning_rate=float(spec.learning_rate), batch_size=int(spec.batch_size)
    )
