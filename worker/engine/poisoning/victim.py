"""The victim's side of a poisoning job: train the architecture with the job's recipe, export, predict.

Every model of a job (the clean baseline, the clean surrogate, each poisoned victim, each retraining
after removal) trains here through the shared fit loop, from `make_model(seed)` (the model record's
trainable module: its own graph or catalog architecture, fresh or pretrained weights). Figures are
measured on the exported ONNX through onnxruntime, the bytes a user downloads.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from worker.engine.batching import batch_bounds
from worker.engine.models.export import export_onnx, verified_export
from worker.engine.models.intake import IntakeReport, OnnxRuntimeClassifier
from worker.engine.models.normalization import Normalized, normalized_classifier
from worker.engine.progress import ProgressTracker
from worker.engine.training.fit import FitHistory, fit
from worker.engine.training.recipe import TrainingRecipe

Classify = Callable[[np.ndarray], np.ndarray]
Preprocess = Callable[[np.ndarray], np.ndarray]


@dataclass
class Exported:
    """A trained model as ONNX bytes (the raw graph, without declared normalization) and how to query it.

    `intake` is set when the bytes went through verified_export (a model that will be registered).
    """

    onnx: bytes
    classify: Classify
    intake: IntakeReport | None = None
    history: FitHistory | None = None

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Labels for x through onnxruntime."""
        if len(x) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(
            [self.classify(x[a:b]).argmax(axis=1) for a, b in batch_bounds(len(x), batch_size)]
        ).astype(np.int64)


def normalizer(normalization: dict[str, list[float]] | None, sample_ndim: int) -> Preprocess | None:
    """(x - mean) / std per channel as a NumPy function, or None without a declared normalization."""
    if not normalization:
        return None
    mean = np.asarray(normalization["mean"], dtype=np.float32).reshape((-1,) + (1,) * (sample_ndim - 1))
    std = np.asarray(normalization["std"], dtype=np.float32).reshape(mean.shape)

    def normalize(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    return normalize


@dataclass
class VictimSetup:
    """What every training of a job shares: the architecture, recipe, seed, shapes and normalization."""

    make_model: Callable[[int], nn.Module]
    recipe: TrainingRecipe
    seed: int
    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    normalization: dict[str, list[float]] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: ProgressTracker | None = None

    @property
    def units_per_training(self) -> float:
        """Progress units of one training run per training sample (epochs)."""
        return float(self.recipe.epochs)

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module behind the declared normalization, taking inputs in the input range."""
        if not self.normalization:
            return module
        norm = self.normalization
        return Normalized(module, norm["mean"], norm["std"], len(self.input_shape)).eval()

    def preprocess(self) -> Preprocess | None:
        """The declared normalization as a NumPy function, or None."""
        return normalizer(self.normalization, len(self.input_shape))

    def train(
        self, x: np.ndarray, y: np.ndarray, *, stage: str, seed: int | None = None
    ) -> tuple[nn.Module, FitHistory]:
        """A fresh module from `seed` (default: the job's) trained on (x, y); returns the raw module."""
        seed = self.seed if seed is None else seed
        module = self.make_model(seed)
        model = self.wrap(module).to(self.device)
        history = fit(
            model,
            x,
            y,
            recipe=self.recipe,
            seed=seed,
            device=self.device,
            progress=self.progress,
            stage=stage,
        )
        return module.eval(), history

    def export(self, module: nn.Module, *, verified: bool, history: FitHistory | None = None) -> Exported:
        """ONNX bytes of the raw module (verified through the intake when it will be registered)."""
        intake = None
        if verified:
            data, intake = verified_export(
                module,
                input_shape=self.input_shape,
                num_classes=self.num_classes,
                input_range=self.input_range,
                seed=self.seed,
            )
        else:
            data = export_onnx(module, input_shape=self.input_shape)
        return Exported(onnx=data, classify=self.classifier(data), intake=intake, history=history)

    def classifier(self, onnx: bytes) -> Classify:
        """Logits of the ONNX model through onnxruntime, on inputs in the input range."""
        runtime = OnnxRuntimeClassifier(onnx)
        if not self.normalization:
            return runtime
        norm = self.normalization
        return normalized_classifier(runtime, norm["mean"], norm["std"], len(self.input_shape))

    def train_and_export(
        self, x: np.ndarray, y: np.ndarray, *, stage: str, verified: bool = False
    ) -> Exported:
        """Train a victim and export it."""
        module, history = self.train(x, y, stage=stage)
        return self.export(module, verified=verified, history=history)
