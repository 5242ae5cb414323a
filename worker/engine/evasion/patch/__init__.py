"""Physical-world adversarial patch: a universal patch trained and evaluated under random transformations."""

from worker.engine.evasion.patch.attack import (
    PatchOutcome,
    learning_rate,
    patch_distribution,
    run_patch_attack,
    train_patch,
)
from worker.engine.evasion.patch.evaluate import PatchEvaluation, evaluate_patch
from worker.engine.evasion.patch.transforms import PatchTransforms, TransformDistribution, apply_patch

__all__ = [
    "PatchEvaluation",
    "PatchOutcome",
    "PatchTransforms",
    "TransformDistribution",
    "apply_patch",
    "evaluate_patch",
    "learning_rate",
    "patch_distribution",
    "run_patch_attack",
    "train_patch",
]
