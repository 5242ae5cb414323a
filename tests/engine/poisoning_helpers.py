"""Shared pieces of the poisoning tests: the digits split, contexts, and small trained victims."""

import numpy as np
import torch
from pydantic import TypeAdapter
from torch import nn

from app.schemas.poisoning import PoisoningAttack, PoisoningAttackBase
from app.schemas.poisoning_detection import PoisoningDetector
from app.schemas.repair_methods import RepairMethodSpec
from worker.engine.datasets import ArrayDataset, load_builtin
from worker.engine.poisoning.data import PoisonContext
from worker.engine.poisoning.detection.base import DetectorSpec
from worker.engine.poisoning.victim import VictimSetup
from worker.engine.training.recipe import TrainingRecipe
from worker.engine.training.trainable import build_trainable

SHAPE = (1, 8, 8)


def digits_split() -> tuple[ArrayDataset, ArrayDataset]:
    """digits-train (1500) and digits-test (297)."""
    return load_builtin("digits-train"), load_builtin("digits-test")


def make_model(architecture: str):
    """make_model(seed) for a catalog architecture on digits, fresh weights."""

    def build(seed: int) -> nn.Module:
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


def setup(architecture: str = "mlp", epochs: int = 5, seed: int = 0) -> VictimSetup:
    """A victim setup on digits with a short Adam recipe."""
    return VictimSetup(make_model(architecture), TrainingRecipe(epochs=epochs), seed, SHAPE, 10, (0.0, 1.0))


def context(
    train: ArrayDataset, surrogate: nn.Module | None = None, seed: int = 0, **kwargs
) -> PoisonContext:
    """An attack context on the training set."""
    return PoisonContext(
        x=train.x, y=train.y, num_classes=10, input_range=(0.0, 1.0), seed=seed, surrogate=surrogate, **kwargs
    )


def stamp_badnets(
    train: ArrayDataset, rate: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 2x2 white bottom-right patch on `rate` of the non-zero digits, relabelled 0 (x, y, indices)."""
    rng = np.random.default_rng(seed)
    indices = np.sort(
        rng.choice(np.flatnonzero(train.y != 0), int(round(rate * len(train.y))), replace=False)
    )
    x, y = train.x.copy(), train.y.copy()
    x[indices, :, -2:, -2:] = 1.0
    y[indices] = 0
    return x, y, indices


@torch.no_grad()
def labels(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """A torch module's labels."""
    return model(torch.as_tensor(x)).argmax(1).numpy()


_ATTACK: TypeAdapter[PoisoningAttackBase] = TypeAdapter(PoisoningAttack)
_DETECTOR: TypeAdapter[DetectorSpec] = TypeAdapter(PoisoningDetector)


def attack_specs(entries: list[dict]) -> list[PoisoningAttackBase]:
    """Typed attack specs of params.attacks entries (validated as the API validates them)."""
    return [_ATTACK.validate_python(entry) for entry in entries]


def detector_specs(entries: list[dict]) -> list[DetectorSpec]:
    """Typed detector specs of params.detection entries."""
    return [_DETECTOR.validate_python(entry) for entry in entries]


def repair_specs(entries: list[dict]) -> list[RepairMethodSpec]:
    """Typed params.repair entries."""
    return [RepairMethodSpec.model_validate(entry) for entry in entries]
