"""The evaluator: every figure of a poisoning report, measured on the exported models and the data.

Nothing here takes an attack's word. Success rates come from the victim's onnxruntime predictions on
held-out inputs (with the attack's test trigger stamped on by this code), detection scores from the
known poison indices, and the threat-model checks from the poisoned arrays themselves.
"""

from typing import Any

import numpy as np

from worker.engine.poisoning.attacks.base import Backdoor, PoisoningAttack
from worker.engine.poisoning.attacks.label_flip import LabelFlip
from worker.engine.poisoning.data import PoisonedSet, TargetSample
from worker.engine.poisoning.victim import Exported


def accuracy(predictions: np.ndarray, y: np.ndarray) -> float:
    """Share of correct predictions (0 for no samples)."""
    return float((predictions == y).mean()) if len(y) else 0.0


def per_class_accuracy(predictions: np.ndarray, y: np.ndarray, num_classes: int) -> list[float | None]:
    """Accuracy within each class (None for a class without held-out samples)."""
    return [accuracy(predictions[y == c], y[y == c]) if (y == c).any() else None for c in range(num_classes)]


def backdoor_success(
    model: Exported, attack: Backdoor, x: np.ndarray, y: np.ndarray, num_classes: int
) -> dict[str, Any]:
    """Triggered held-out inputs (those that count) classified as their backdoor label."""
    intended, counted = attack.intended(y, num_classes)
    if not counted.any():
        return {"attack_success_rate": None, "n_triggered": 0}
    predictions = model.predict(attack.test_trigger().apply(x[counted]))
    return {
        "attack_success_rate": accuracy(predictions, intended[counted]),
        "n_triggered": int(counted.sum()),
    }


def flip_success(
    model: Exported, baseline_accuracy: float, attack: LabelFlip, x: np.ndarray, y: np.ndarray
) -> dict[str, Any]:
    """Label flips: the accuracy drop; targeted, the share of held-out source samples called the target."""
    predictions = model.predict(x)
    clean = accuracy(predictions, y)
    out: dict[str, Any] = {
        "accuracy_drop": baseline_accuracy - clean,
        "attack_success_rate": baseline_accuracy - clean,
    }
    if attack.flip is not None:
        source, target = attack.flip
        members = y == source
        out["source_to_target_rate"] = accuracy(predictions[members], np.full(int(members.sum()), target))
        out["source_class_accuracy"] = accuracy(predictions[members], y[members])
        out["attack_success_rate"] = out["source_to_target_rate"]
    return out


def target_hit(model: Exported, target: TargetSample) -> tuple[bool, int]:
    """Whether the victim classifies the target as intended, and what it predicts."""
    predicted = int(model.predict(target.x[None])[0])
    return predicted == target.intended, predicted


def success(
    model: Exported,
    attack: PoisoningAttack,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    baseline_accuracy: float,
    target: TargetSample | None = None,
) -> dict[str, Any]:
    """The attack's success on one model, as DESIGN section 8 defines it for the attack's family."""
    if isinstance(attack, Backdoor):
        return backdoor_success(model, attack, x, y, num_classes)
    if isinstance(attack, LabelFlip):
        return flip_success(model, baseline_accuracy, attack, x, y)
    if target is None:
        raise ValueError(f"{attack.name} is measured per target sample")
    hit, predicted = target_hit(model, target)
    return {"attack_success_rate": float(hit), "predicted": predicted}


def precision_recall_f1(suspected: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
    """Detection against the known poison indices (precision 1 when nothing is suspected)."""
    suspected_set, truth = set(int(i) for i in suspected), set(int(i) for i in poisoned)
    hits = len(suspected_set & truth)
    precision = hits / len(suspected_set) if suspected_set else 1.0
    recall = hits / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def threat_model_facts(
    clean_x: np.ndarray, clean_y: np.ndarray, poisoned: PoisonedSet, input_range: tuple[float, float]
) -> dict[str, Any]:
    """What the poisoned arrays show: changed samples and labels, perturbation size, range."""
    changed_x = np.flatnonzero((poisoned.x != clean_x).reshape(len(clean_x), -1).any(axis=1))
    changed_y = np.flatnonzero(poisoned.y != clean_y)
    changed = np.union1d(changed_x, changed_y)
    delta = np.abs(poisoned.x - clean_x)
    if poisoned.free is not None:
        delta = np.where(poisoned.free[None], 0.0, delta)
    low, high = input_range
    return {
        "n_changed": int(len(changed)),
        "outside_declared": int(len(np.setdiff1d(changed, poisoned.indices))),
        "labels_changed": int(len(changed_y)),
        "max_perturbation": float(delta[poisoned.indices].max()) if len(poisoned.indices) else 0.0,
        "in_range": bool(poisoned.x.min() >= low - 1e-6 and poisoned.x.max() <= high + 1e-6),
    }
