"""Audit mode: the tenant's own trained model and training set, detection only.

No attack runs and nothing trains. Each detector reads the model (its ONNX graph through onnxruntime)
on the training set and names the classes and samples that look poisoned, with scores. The held-out
set is taken as clean: STRIP superimposes and calibrates on it.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.engine.batching import batch_bounds
from worker.engine.datasets import ArrayDataset
from worker.engine.models.intake import OnnxRuntimeClassifier
from worker.engine.models.normalization import normalized_classifier
from worker.engine.poisoning.detect_step import summarize
from worker.engine.poisoning.detection.base import DetectionData, DetectorSpec
from worker.engine.poisoning.detection.registry import build_detector
from worker.engine.poisoning.runner import PoisoningOutcome
from worker.engine.poisoning.validate import PoisoningInputError, check_dataset
from worker.engine.poisoning.victim import normalizer
from worker.engine.progress import ProgressCallback, ProgressTracker

TOP_SUSPECTS = 50


def _accuracy(classify: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of an onnxruntime classifier, in batches."""
    predictions = np.concatenate([classify(x[a:b]).argmax(axis=1) for a, b in batch_bounds(len(x), 1024)])
    return float((predictions == y).mean())


def run_poisoning_audit(
    onnx_bytes: bytes,
    train: ArrayDataset,
    evaluation: ArrayDataset,
    detection: Sequence[DetectorSpec],
    *,
    input_shape: Sequence[int],
    num_classes: int,
    input_range: tuple[float, float] = (0.0, 1.0),
    normalization: dict[str, list[float]] | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> tuple[PoisoningOutcome, dict[str, Any]]:
    """Run every detector on the tenant's model and training set; the outcome and a short summary."""
    shape = tuple(int(d) for d in input_shape)
    low, high = float(input_range[0]), float(input_range[1])
    for data, what in ((train, "training set"), (evaluation, "held-out set")):
        check_dataset(
            data.x, data.y, input_shape=shape, num_classes=num_classes, input_range=(low, high), what=what
        )
    if not detection:
        raise PoisoningInputError("detection_invalid", "an audit needs at least one detector")
    detectors = [build_detector(spec) for spec in detection]
    tracker = ProgressTracker(len(detectors) * len(train.y), progress)
    preprocess = normalizer(normalization, len(shape))
    classify: Any = OnnxRuntimeClassifier(onnx_bytes)
    if normalization:
        classify = normalized_classifier(classify, normalization["mean"], normalization["std"], len(shape))
    data = DetectionData(
        x=train.x,
        y=train.y,
        num_classes=num_classes,
        input_range=(low, high),
        onnx=onnx_bytes,
        clean_x=evaluation.x,
        clean_y=evaluation.y,
        seed=seed,
        preprocess=preprocess,
    )
    rows, arrays = [], {}
    suspected_any: set[int] = set()
    for detector in detectors:
        result = detector.detect(data)
        tracker.advance(len(train.y), f"audit: {detector.name}")
        order = result.suspected[np.argsort(-result.scores[result.suspected], kind="stable")]
        row = summarize(detector, result) | {"params": detector.params(), "paper": detector.paper}
        row["top_suspects"] = [
            {"index": int(i), "label": int(train.y[i]), "score": float(result.scores[i])}
            for i in order[:TOP_SUSPECTS]
        ]
        rows.append(row)
        arrays[f"{detector.name}_suspected"] = result.suspected
        arrays[f"{detector.name}_scores"] = result.scores
        suspected_any |= {int(i) for i in result.suspected}
    flagged = sorted({label for row in rows for label in row["flagged_classes"]})
    report = {
        "mode": "audit",
        "n_train": int(len(train.y)),
        "n_eval": int(len(evaluation.y)),
        "num_classes": num_classes,
        "input_shape": list(shape),
        "input_range": [low, high],
        "model_accuracy": {
            "held_out": _accuracy(classify, evaluation.x, evaluation.y),
            "training_set": _accuracy(classify, train.x, train.y),
        },
        "detectors": rows,
        "suspected_classes": flagged,
        "n_suspected": len(suspected_any),
        "checks": [],
    }
    arrays["suspected_any"] = np.asarray(sorted(suspected_any), dtype=np.int64)
    summary = {"suspected_classes": flagged, "n_suspected": len(suspected_any)}
    return PoisoningOutcome(report=report, arrays={"suspected_indices": arrays}), summary
