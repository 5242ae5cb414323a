"""What the victim's prediction interface returns (`victim_output`, a VictimOutputParams), and what an
attacker trains on."""

from dataclasses import dataclass

import numpy as np

from app.schemas.extraction import VictimOutputParams
from worker.engine.errors import EngineError


class ExtractionError(EngineError, ValueError):
    """Input an extraction cannot run on; `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        """Keep the code and the message."""
        super().__init__(message, code=code)


@dataclass(frozen=True)
class Answer:
    """What the attacker gets back for a batch: labels always, scores [N, K] unless label-only (None)."""

    labels: np.ndarray
    scores: np.ndarray | None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for any finite logits."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def keep_top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """The k largest entries of each row (ties: lower class first), the others set to 0."""
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    kept = np.zeros_like(probs)
    np.put_along_axis(kept, order, np.take_along_axis(probs, order, axis=1), axis=1)
    return kept


def shape_answer(probs: np.ndarray, output: VictimOutputParams, *, labels_only: bool = False) -> Answer:
    """The interface's answer for (possibly defended) probabilities: labels, or shaped scores."""
    if labels_only or output.kind == "label":
        return Answer(labels=probs.argmax(axis=1).astype(np.int64), scores=None)
    scores = keep_top_k(probs, output.top_k) if output.kind == "top_k" and output.top_k else probs
    if output.decimals is not None:
        scores = np.round(scores, output.decimals)
    scores = scores.astype(np.float32)
    return Answer(labels=scores.argmax(axis=1).astype(np.int64), scores=scores)


def soft_targets(scores: np.ndarray) -> np.ndarray:
    """Label distributions from returned scores: each row renormalised; a row of zeros becomes uniform."""
    values = np.clip(scores.astype(np.float64), 0.0, None)
    total = values.sum(axis=1, keepdims=True)
    uniform = np.full_like(values, 1.0 / values.shape[1])
    return np.where(total > 0, values / np.where(total > 0, total, 1.0), uniform).astype(np.float32)


def distributions(outputs: np.ndarray, num_classes: int) -> np.ndarray:
    """Label distributions [N, K] from logged outputs: one-hot for labels [N], soft targets for scores."""
    if outputs.ndim == 1:
        return np.eye(num_classes, dtype=np.float32)[outputs.astype(np.int64)]
    return soft_targets(outputs)


def training_targets(outputs: np.ndarray) -> np.ndarray:
    """What the fit loop trains on: integer labels [N] as they are, scores [N, K] as distributions."""
    return outputs.astype(np.int64) if outputs.ndim == 1 else soft_targets(outputs)
