"""Helpers shared by the extraction tests: a counting victim and a trainer for small surrogates."""

from collections.abc import Callable

import numpy as np
import torch
from pydantic import TypeAdapter

from app.schemas.extraction import (
    ExtractionAttack,
    ExtractionAttackSpec,
    ExtractionDefense,
    ExtractionDefenseSpec,
)
from worker.engine.extraction.strategies import StrategyContext
from worker.engine.extraction.surrogate import SurrogateTrainer
from worker.engine.models.intake import OnnxRuntimeClassifier
from worker.engine.training.recipe import TrainingRecipe
from worker.engine.training.trainable import build_trainable, trainable_from_onnx

SHAPE = (1, 8, 8)


class CountingVictim:
    """The victim behind onnxruntime, counting every sample that reaches it (below the query layer)."""

    def __init__(self, onnx: bytes) -> None:
        self.classifier = OnnxRuntimeClassifier(onnx)
        self.samples = 0
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.samples += len(x)
        self.calls += 1
        return self.classifier(x)


def victim_graph_factory(onnx: bytes):
    """`architecture: victim`: the victim's graph re-initialised from a seed."""
    return lambda seed: trainable_from_onnx(onnx, init="random", seed=seed)


def catalog_factory(architecture: str) -> Callable[[int], torch.nn.Module]:
    """A catalog architecture for digits, freshly initialised from a seed."""

    def build(seed: int) -> torch.nn.Module:
        return build_trainable(
            architecture=architecture,
            onnx_bytes=None,
            safetensors_bytes=None,
            input_shape=SHAPE,
            num_classes=10,
            init="random",
            seed=seed,
        )

    return build


mlp_factory = catalog_factory("mlp")


def context(factory, *, epochs: int = 15, seed: int = 0) -> StrategyContext:
    """A strategy context training surrogates on the CPU."""
    trainer = SurrogateTrainer(factory, TrainingRecipe(epochs=epochs, batch_size=64), torch.device("cpu"))
    return StrategyContext(trainer, seed, torch.device("cpu"), (0.0, 1.0))


@torch.no_grad()
def agreement(model: torch.nn.Module, x: np.ndarray, labels: np.ndarray) -> float:
    """Share of x where the module's label equals the given labels."""
    model.eval()
    return float((model(torch.from_numpy(x)).argmax(1).numpy() == labels).mean())


def attack_spec(entry: dict) -> ExtractionAttackSpec:
    """The typed spec of an attack entry, as the API validates it."""
    return TypeAdapter(ExtractionAttack).validate_python(entry)


def defense_spec(entry: dict) -> ExtractionDefenseSpec:
    """The typed spec of a defense entry, as the API validates it."""
    return TypeAdapter(ExtractionDefense).validate_python(entry)
