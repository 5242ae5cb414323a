"""The detector interface: built from its typed spec, what it reads, and what it finds."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from app.schemas.poisoning_detection import ActivationClusteringParams, SpectralSignaturesParams, StripParams
from worker.engine.from_spec import FromSpec
from worker.engine.poisoning.detection.features import FeatureReader
from worker.engine.poisoning.detection.gate import ClassVerdict

DetectorSpec = ActivationClusteringParams | SpectralSignaturesParams | StripParams


@dataclass
class DetectionData:
    """The training set under suspicion, the trained model's view of it, and clean held-out inputs.

    `reader` returns the model's logits and feature-layer activations; they are computed once per
    layer and cached. `clean_x` are held-out inputs known to be clean (STRIP's overlays and threshold);
    `triggered_x`, when the job planted a backdoor, are held-out inputs carrying its test trigger.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_range: tuple[float, float]
    onnx: bytes
    clean_x: np.ndarray
    clean_y: np.ndarray | None = None
    seed: int = 0
    preprocess: Any = None
    triggered_x: np.ndarray | None = None
    _readers: dict[str, FeatureReader] = field(default_factory=dict, repr=False)
    _features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def reader(self, layer: str) -> FeatureReader:
        """The feature reader for a layer choice (ValueError when the model has no such layer)."""
        if layer not in self._readers:
            self._readers[layer] = FeatureReader(self.onnx, layer, self.preprocess)
        return self._readers[layer]

    def features(self, layer: str) -> np.ndarray:
        """Training-set activations at the layer, [N, D] float32."""
        if layer not in self._features:
            self._features[layer] = self.reader(layer)(self.x)
        return self._features[layer][1]

    def class_blocks(self, layer: str, min_members: int = 4) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per class with at least `min_members` samples: its member indices and centred activations."""
        features = self.features(layer)
        for label in range(self.num_classes):
            members = np.flatnonzero(self.y == label)
            if len(members) < min_members:
                continue
            block = features[members].astype(np.float64)
            yield members, block - block.mean(axis=0)


@dataclass
class DetectionResult:
    """Per-sample suspicion scores (higher: more suspicious), suspected indices and per-class verdicts."""

    scores: np.ndarray
    suspected: np.ndarray
    classes: list[ClassVerdict]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged_classes(self) -> list[int]:
        """Classes the gate flagged as poisoned."""
        return [verdict.label for verdict in self.classes if verdict.flagged]


class Detector(FromSpec, ABC):
    """Base class of poison detectors, built from the detector's typed spec (app.schemas.poisoning_detection).

    Each engine class declares `spec_type`, the spec it is built from (the registry's key); whether it
    reads activations at a layer is the spec's `reads_features` fact.
    """

    spec_type: ClassVar[type[DetectorSpec]]
    spec: DetectorSpec
    paper: ClassVar[str]

    @abstractmethod
    def detect(self, data: DetectionData) -> DetectionResult:
        """Score every training sample, gate the classes and name the suspected samples."""
