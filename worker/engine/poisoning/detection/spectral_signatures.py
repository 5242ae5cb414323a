"""Spectral signatures: the top singular direction of each class's centred activations."""

from typing import ClassVar

import numpy as np
from sklearn.mixture import GaussianMixture

from app.schemas.poisoning_detection import SpectralSignaturesParams
from worker.engine.poisoning.detection.base import DetectionData, DetectionResult, Detector, DetectorSpec
from worker.engine.poisoning.detection.gate import gate_classes


def _tail_group(projection: np.ndarray, seed: int) -> np.ndarray:
    """The minority component of a two-component Gaussian mixture fitted to the projection."""
    mixture = GaussianMixture(2, n_init=3, random_state=seed).fit(projection[:, None])
    assigned = mixture.predict(projection[:, None])
    counts = np.bincount(assigned, minlength=2)
    if counts.min() == 0:
        return np.zeros(len(projection), dtype=bool)
    return assigned == int(np.argmin(counts))


class SpectralSignatures(Detector):
    """Spectral signatures.

    Paper: Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks", NeurIPS 2018.

    Threat model: as activation clustering; the defender holds the training set and the trained model.

    Per class, the activations at `layer` are centred and projected on their top right singular
    vector; the outlier score is the squared projection (Tran et al.). Instead of removing a fixed
    1.5 x eps share of every class (which assumes the poison rate and flags clean classes), the
    suspect group is the minority component of a two-component Gaussian mixture on the projection,
    and the class gate (gate.py) decides whether the class is poisoned at all.

    Parameters:
        layer: "auto" (default), "last_conv", "penultimate", or a graph value name.
        threshold: the gate's own-share threshold, default 0.8.
    """

    spec_type: ClassVar[type[DetectorSpec]] = SpectralSignaturesParams
    spec: SpectralSignaturesParams
    paper: ClassVar[str] = "Tran, Li and Madry 2018 (spectral signatures)"

    def detect(self, data: DetectionData) -> DetectionResult:
        """Score by the top singular direction, group the tail, gate the classes."""
        features = data.features(self.spec.layer)
        suspects = np.zeros(len(data.y), dtype=bool)
        scores = np.zeros(len(data.y), dtype=np.float64)
        for members, block in data.class_blocks(self.spec.layer):
            _, _, vt = np.linalg.svd(block, full_matrices=False)
            projection = block @ vt[0]
            scale = float(np.median(projection**2)) or 1.0
            scores[members] = projection**2 / scale
            suspects[members[_tail_group(projection, data.seed)]] = True
        verdicts = gate_classes(
            features, data.y, suspects, data.num_classes, threshold=float(self.spec.threshold)
        )
        flagged = {verdict.label for verdict in verdicts if verdict.flagged}
        suspected = np.flatnonzero(suspects & np.isin(data.y, list(flagged))).astype(np.int64)
        return DetectionResult(
            scores=scores.astype(np.float32),
            suspected=suspected,
            classes=verdicts,
            details={**data.reader(self.spec.layer).describe(), "feature_dims": int(features.shape[1])},
        )
