"""The evaluator: every figure is measured on the exported surrogate (onnxruntime) or on the victim's own
answers, never taken from the attack that made them."""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from app.schemas.extraction import VictimOutputParams
from worker.engine.extraction.defenses import Defense
from worker.engine.extraction.query import honest_answers
from worker.engine.models.export import verified_export
from worker.engine.models.intake import OnnxRuntimeClassifier

EVAL_BATCH = 512


@dataclass(frozen=True)
class EvaluationSet:
    """The held-out set, the undefended victim's probabilities and labels on it (evaluator queries)."""

    x: np.ndarray
    y: np.ndarray
    victim_probs: np.ndarray

    @property
    def victim_labels(self) -> np.ndarray:
        """The victim's labels."""
        return self.victim_probs.argmax(axis=1)

    @property
    def victim_accuracy(self) -> float:
        """The victim's accuracy."""
        return float((self.victim_labels == self.y).mean())

    @property
    def chance_fidelity(self) -> float:
        """Fidelity of a constant surrogate that always answers the victim's most common label."""
        return float(np.bincount(self.victim_labels).max() / len(self.y))


def onnx_labels(onnx: bytes, x: np.ndarray) -> np.ndarray:
    """Labels of an ONNX model through onnxruntime, in batches."""
    classifier = OnnxRuntimeClassifier(onnx)
    return np.concatenate(
        [classifier(x[i : i + EVAL_BATCH]).argmax(axis=1) for i in range(0, len(x), EVAL_BATCH)]
    )


@dataclass(frozen=True)
class Measured:
    """A surrogate exported and measured: its ONNX, the intake's report and its figures."""

    onnx: bytes
    intake: dict[str, Any]
    fidelity: float
    surrogate_accuracy: float


def measure_surrogate(
    module: nn.Module,
    data: EvaluationSet,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    input_range: tuple[float, float],
    seed: int,
) -> Measured:
    """Export through verified_export and measure fidelity and accuracy of the ONNX in onnxruntime."""
    onnx, report = verified_export(
        module, input_shape=input_shape, num_classes=num_classes, input_range=input_range, seed=seed
    )
    labels = onnx_labels(onnx, data.x)
    return Measured(
        onnx=onnx,
        intake=asdict(report),
        fidelity=float((labels == data.victim_labels).mean()),
        surrogate_accuracy=float((labels == data.y).mean()),
    )


def defense_cost(
    data: EvaluationSet, output: VictimOutputParams, defense: Defense | None, seed: int
) -> dict[str, Any]:
    """What the defense costs honest callers on the evaluation set (label changes, accuracy, score change)."""
    plain = honest_answers(data.victim_probs, output, None, seed)
    defended = honest_answers(data.victim_probs, output, defense, seed)
    change = None
    if plain.scores is not None and defended.scores is not None:
        change = float(np.abs(defended.scores.astype(np.float64) - plain.scores).sum(axis=1).mean())
    return {
        "label_change_rate": float((defended.labels != data.victim_labels).mean()),
        "accuracy": float((defended.labels == data.y).mean()),
        "mean_l1_score_change": change,
        "returns_scores": defended.scores is not None,
    }
