"""Preprocessing defenses: input transforms, the defended pipeline (BPDA, EOT) and its black-box form."""

from worker.engine.defense.preprocessing.pipeline import (
    DefendedPipeline,
    build_transforms,
    defended_classifier,
    defended_module,
)
from worker.engine.defense.preprocessing.transforms import TRANSFORMS, Transform, build_transform

__all__ = [
    "TRANSFORMS",
    "DefendedPipeline",
    "Transform",
    "build_transform",
    "build_transforms",
    "defended_classifier",
    "defended_module",
]
