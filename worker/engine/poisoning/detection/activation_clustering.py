"""Activation clustering: two clusters per class at a feature layer; the gate decides which are poison."""

from typing import ClassVar

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from app.schemas.poisoning_detection import ActivationClusteringParams
from worker.engine.poisoning.detection.base import DetectionData, DetectionResult, Detector, DetectorSpec
from worker.engine.poisoning.detection.gate import gate_classes


class ActivationClustering(Detector):
    """Activation clustering.

    Paper: Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy and Srivastava, "Detecting Backdoor
    Attacks on Deep Neural Networks by Activation Clustering", 2018.

    Threat model: the defender holds the (possibly poisoned) training set and the model trained on it
    and looks for samples the model represents unlike the rest of their label.

    Per class, the activations at `layer` are centred, reduced to `dims` principal components and
    split by 2-means; the smaller cluster is the suspect group. The class gate (gate.py: an
    exclusionary reclassification in feature space) then decides whether the class is poisoned at
    all; only flagged classes contribute suspects. Scores: how much closer a sample lies to its
    class's smaller cluster than to the larger, in units of the class's spread (positive: closer).

    Parameters:
        layer: "auto" (default: the last convolutional block, else the penultimate layer),
            "last_conv", "penultimate", or a graph value name.
        dims: principal components kept per class, default 10 (Chen et al.).
        threshold: the gate's own-share threshold, default 0.8.
    """

    spec_type: ClassVar[type[DetectorSpec]] = ActivationClusteringParams
    spec: ActivationClusteringParams
    paper: ClassVar[str] = "Chen et al. 2018 (activation clustering)"

    def detect(self, data: DetectionData) -> DetectionResult:
        """Split every class, gate the classes, suspect the smaller cluster of flagged ones."""
        features = data.features(self.spec.layer)
        suspects = np.zeros(len(data.y), dtype=bool)
        scores = np.zeros(len(data.y), dtype=np.float64)
        for members, block in data.class_blocks(self.spec.layer):
            dims = min(int(self.spec.dims), len(members) - 1, block.shape[1])
            reduced = PCA(dims, random_state=data.seed).fit_transform(block) if dims >= 1 else block
            split = KMeans(2, n_init=10, random_state=data.seed).fit(reduced)
            counts = np.bincount(split.labels_, minlength=2)
            small = int(np.argmin(counts))
            if counts.min() == 0:
                continue
            to_small = np.linalg.norm(reduced - split.cluster_centers_[small], axis=1)
            to_large = np.linalg.norm(reduced - split.cluster_centers_[1 - small], axis=1)
            spread = float(np.sqrt((reduced**2).sum(axis=1).mean())) or 1.0
            scores[members] = (to_large - to_small) / spread
            suspects[members[split.labels_ == small]] = True
        verdicts = gate_classes(
            features, data.y, suspects, data.num_classes, threshold=float(self.spec.threshold)
        )
        flagged = {verdict.label for verdict in verdicts if verdict.flagged}
        suspected = np.flatnonzero(suspects & np.isin(data.y, list(flagged))).astype(np.int64)
        reader = data.reader(self.spec.layer)
        return DetectionResult(
            scores=scores.astype(np.float32),
            suspected=suspected,
            classes=verdicts,
            details={**reader.describe(), "feature_dims": int(features.shape[1])},
        )
