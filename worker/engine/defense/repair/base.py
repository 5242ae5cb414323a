"""The repair interface: what a method reads (the model's graph, a small clean set) and what it returns."""

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from worker.engine.defense.repair.units import Unit
from worker.engine.models.normalization import Normalized
from worker.engine.models.onnx_graph import OnnxGraphModule
from worker.engine.poisoning.attacks.triggers import Trigger
from worker.engine.poisoning.spec import dataclass_from_spec, dataclass_params
from worker.engine.progress import ProgressTracker
from worker.engine.training.fit import FitHistory, fit
from worker.engine.training.recipe import TrainingRecipe

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


@dataclass
class Repair(ABC):
    """Base class of repair methods: a dataclass of parameters with published defaults."""

    name: ClassVar[str]
    paper: ClassVar[str]

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Build from a spec entry without `name`; unknown and missing keys are errors."""
        return dataclass_from_spec(cls, spec, cls.name)

    def params(self) -> dict[str, Any]:
        """Effective parameters for the report."""
        return dataclass_params(self)

    def units_of_work(self, n: int) -> float:
        """Progress units the method spends on n clean samples (fine-tuning epochs x samples by default)."""
        return float(getattr(self, "epochs", 0)) * n

    @abstractmethod
    def repair(self, context: RepairContext) -> RepairResult:
        """Change the context's graph in place and say what was done."""


def recipe(epochs: int, learning_rate: float, batch_size: int) -> TrainingRecipe:
    """The fine-tuning recipe of the repair methods (Adam, constant rate)."""
    return TrainingRecipe(epochs=int(epochs), learning_rate=float(learning_rate), batch_size=int(batch_size))
