"""Physical-world adversarial patch: a universal patch trained and evaluated under random transformations."""

from worker.engine.evasion.patch.attack import PatchConfig, PatchOutcome, run_patch_attack, train_patch
from worker.engine.evasion.patch.evaluate import PatchEvaluation, evaluate_patch
from worker.engine.evasion.patch.transforms import PatchTransforms, TransformDistribution, apply_patch

__all__ = [
    "PatchConfig",
    "PatchEvaluation",
    "PatchOutcome",
    "PatchTransforms",
    "TransformDistribution",
    "apply_patch",
    "evaluate_patch",
    "run_patch_attack",
    "train_patch",
]
