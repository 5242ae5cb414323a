"""STRIP: inputs whose predictions stay certain under superimposed clean images carry a trigger."""

from typing import Any, ClassVar

import numpy as np
from scipy.stats import binom, norm

from app.schemas.poisoning_detection import StripParams
from worker.engine.batching import batch_bounds
from worker.engine.models.intake import OnnxRuntimeClassifier
from worker.engine.poisoning.detection.base import DetectionData, DetectionResult, Detector, DetectorSpec
from worker.engine.poisoning.detection.gate import ClassVerdict
from worker.engine.seeding import numpy_rng

_BATCH = 2048


def _entropy(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the softmax of each row."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return -(probabilities * np.log(np.clip(probabilities, 1e-12, None))).sum(axis=1)


class Strip(Detector):
    """STRIP, a run-time trojan detector.

    Paper: Gao, Xu, Wang, Chen, Ranasinghe and Nepal, "STRIP: A Defence Against Trojan Attacks on
    Deep Neural Networks", ACSAC 2019.

    Threat model: the defender holds the deployed model and a few clean held-out inputs; it screens
    inputs (at inference time, and here also the training set) by the model's outputs alone.

    Each input is superimposed with `overlays` clean held-out images (x + blend * (o - low), clipped
    to the input range, as the paper's image addition); a trigger keeps the prediction certain, so
    a low mean prediction entropy marks a triggered input. At inference time (the paper's use) the
    boundary is the `frr` quantile of the entropies of one half of the clean held-out inputs, and the
    other half measures the false rejection rate; the report gives the detection rate on triggered
    held-out inputs. On the training set each sample is compared with the `frr` point of a normal
    distribution fitted to clean held-out entropies of its own label (the paper's boundary; per
    label because superimposed digits look like some classes more than others), and a class is
    flagged only when at least `min_share` of it is low-entropy and that is more than the model's
    typical class holds (one-sided binomial test against the median class share, at `alpha` with
    Bonferroni over classes: a model is surer of what it trained on). Suspects are the low-entropy
    samples of flagged classes.

    Parameters:
        overlays: clean images superimposed per input, default 20 (the paper uses 100; 20 keeps
            the cost at 20 forward passes per input with little change in entropy).
        blend: weight of the overlay, default 1.0 (plain addition).
        frr: false rejection rate that sets the threshold, default 0.01.
        alpha: significance of the per-class test, default 0.01.
        min_share: the least share of a class that must look triggered before it is flagged, default
            0.1 (clean digits classes stay under 0.07; smaller implants are activation clustering's).
    """

    spec_type: ClassVar[type[DetectorSpec]] = StripParams
    spec: StripParams
    paper: ClassVar[str] = "Gao et al. 2019 (STRIP)"

    def _mean_entropy(
        self,
        classify: Any,
        x: np.ndarray,
        pool: np.ndarray,
        low: float,
        high: float,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Mean prediction entropy of each input over its superimposed copies."""
        n = int(self.spec.overlays)
        picks = rng.integers(0, len(pool), size=(len(x), n))
        out = np.empty(len(x), dtype=np.float64)
        per_batch = max(1, _BATCH // n)
        for start, stop in batch_bounds(len(x), per_batch):
            base = np.repeat(x[start:stop], n, axis=0)
            overlay = pool[picks[start:stop].reshape(-1)]
            mixed = np.clip(base + float(self.spec.blend) * (overlay - low), low, high).astype(np.float32)
            out[start:stop] = _entropy(classify(mixed)).reshape(stop - start, n).mean(axis=1)
        return out

    def detect(self, data: DetectionData) -> DetectionResult:
        """Screen triggered inputs with a global threshold; scan the training set per label, gate classes."""
        if len(data.clean_x) < 4:
            raise ValueError("strip needs at least 4 clean held-out inputs")
        onnx_classifier = OnnxRuntimeClassifier(data.onnx)

        def classify(x: np.ndarray) -> np.ndarray:
            return onnx_classifier(data.preprocess(x) if data.preprocess is not None else x)

        low, high = data.input_range
        rng = numpy_rng(data.seed, 31)
        pool = data.clean_x
        clean_entropy = self._mean_entropy(classify, pool, pool, low, high, rng)
        inference = self._inference(classify, data, clean_entropy, rng)
        entropy = self._mean_entropy(classify, data.x, pool, low, high, rng)
        low_entropy = entropy < self._label_thresholds(clean_entropy, data)[data.y]
        verdicts = self._gate(low_entropy, data)
        flagged_classes = [verdict.label for verdict in verdicts if verdict.flagged]
        suspected = np.flatnonzero(low_entropy & np.isin(data.y, flagged_classes)).astype(np.int64)
        return DetectionResult(
            scores=(-entropy).astype(np.float32),
            suspected=suspected,
            classes=verdicts,
            details={"inference": inference, "n_clean": int(len(pool))},
        )

    def _inference(
        self, classify: Any, data: DetectionData, clean_entropy: np.ndarray, rng: np.random.Generator
    ) -> dict[str, Any]:
        """The paper's test-time screen: a global threshold on half the clean inputs, the FRR on the rest."""
        order = rng.permutation(len(clean_entropy))
        half = len(order) // 2
        threshold = float(np.quantile(clean_entropy[order[:half]], float(self.spec.frr)))
        out: dict[str, Any] = {
            "threshold": threshold,
            "false_rejection_rate": float((clean_entropy[order[half:]] < threshold).mean()),
        }
        if data.triggered_x is not None and len(data.triggered_x):
            low, high = data.input_range
            triggered = self._mean_entropy(classify, data.triggered_x, data.clean_x, low, high, rng)
            out["detection_rate"] = float((triggered < threshold).mean())
            out["n_triggered"] = int(len(triggered))
        return out

    def _threshold(self, entropies: np.ndarray) -> float:
        """The frr point of a normal distribution fitted to clean entropies (Gao et al.'s boundary)."""
        spread = float(entropies.std(ddof=1)) if len(entropies) > 1 else 0.0
        return float(norm.ppf(float(self.spec.frr), loc=float(entropies.mean()), scale=max(spread, 1e-12)))

    def _label_thresholds(self, clean_entropy: np.ndarray, data: DetectionData) -> np.ndarray:
        """Per label, the boundary fitted to clean held-out entropies of that label (global where too few)."""
        labels = np.asarray(data.clean_y) if data.clean_y is not None else None
        thresholds = np.full(data.num_classes, self._threshold(clean_entropy))
        if labels is not None:
            for label in range(data.num_classes):
                if (labels == label).sum() >= 3:
                    thresholds[label] = self._threshold(clean_entropy[labels == label])
        return thresholds

    def _gate(self, low_entropy: np.ndarray, data: DetectionData) -> list[ClassVerdict]:
        """Flag a class whose low-entropy share beats the model's typical class (binomial, Bonferroni)."""
        counts = [
            (int((data.y == c).sum()), int((low_entropy & (data.y == c)).sum()))
            for c in range(data.num_classes)
        ]
        shares = [k / n for n, k in counts if n]
        typical = max(float(self.spec.frr), float(np.median(shares)) if shares else 0.0)
        verdicts = []
        for label, (n, k) in enumerate(counts):
            p_value = float(binom.sf(k - 1, n, typical)) if n and k else 1.0
            share = k / n if n else 0.0
            flagged = p_value < float(self.spec.alpha) / data.num_classes and share >= float(
                self.spec.min_share
            )
            verdicts.append(ClassVerdict(label, n, k, None, flagged))
        return verdicts
