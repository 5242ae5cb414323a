"""Detection on one poisoned victim: each detector's suspects, scored against the known poisons,
and with retrain_after_removal the victim retrained on what the detector kept."""

from typing import Any

import numpy as np

from worker.engine.poisoning.attacks.base import Backdoor, PoisoningAttack
from worker.engine.poisoning.data import PoisonedSet
from worker.engine.poisoning.detection.base import DetectionData, DetectionResult, Detector
from worker.engine.poisoning.job import PoisoningJob
from worker.engine.poisoning.metrics import accuracy, precision_recall_f1, success
from worker.engine.poisoning.victim import Exported


def detection_data(
    job: PoisoningJob, model: Exported, x: np.ndarray, y: np.ndarray, attack: PoisoningAttack | None
) -> DetectionData:
    """What detectors read for a model trained on (x, y); backdoors add triggered held-out inputs."""
    evaluation = job.evaluation
    triggered = None
    if isinstance(attack, Backdoor):
        _, counted = attack.intended(evaluation.y, job.num_classes)
        triggered = attack.test_trigger().apply(evaluation.x[counted])
    return DetectionData(
        x=x,
        y=y,
        num_classes=job.num_classes,
        input_range=job.input_range,
        onnx=model.onnx,
        clean_x=evaluation.x,
        clean_y=evaluation.y,
        seed=job.setup.seed,
        preprocess=job.setup.preprocess(),
        triggered_x=triggered,
    )


def summarize(detector: Detector, result: DetectionResult) -> dict[str, Any]:
    """The report row of a detection, without scores against the truth."""
    return {
        "name": detector.name,
        "flagged_classes": result.flagged_classes,
        "n_suspected": int(len(result.suspected)),
        "classes": [verdict.as_dict() for verdict in result.classes],
        **result.details,
    }


def run_detectors(
    job: PoisoningJob,
    victim: Exported,
    poisoned: PoisonedSet,
    attack: PoisoningAttack,
    stage: str,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Every detector on the poisoned set as the victim sees it; rows for the report and suspect arrays."""
    data = detection_data(job, victim, poisoned.x, poisoned.y, attack)
    rows, arrays = [], {}
    for detector in job.detectors:
        result = detector.detect(data)
        job.advance(len(poisoned.y), f"{stage}: {detector.name}")
        row = summarize(detector, result) | precision_recall_f1(result.suspected, poisoned.indices)
        row["n_true_positives"] = int(np.isin(result.suspected, poisoned.indices).sum())
        if job.retrain_after_removal:
            row["after_removal"] = _retrain_without(
                job, poisoned, result.suspected, attack, f"{stage}: {detector.name}"
            )
        rows.append(row)
        arrays[f"{detector.name}_suspected"] = result.suspected
        arrays[f"{detector.name}_scores"] = result.scores
    return rows, arrays


def _retrain_without(
    job: PoisoningJob, poisoned: PoisonedSet, suspected: np.ndarray, attack: PoisoningAttack, stage: str
) -> dict[str, Any]:
    """Retrain from scratch on the samples the detector kept; measure accuracy and success again."""
    kept = np.setdiff1d(np.arange(len(poisoned.y)), suspected)
    model = job.setup.train_and_export(poisoned.x[kept], poisoned.y[kept], stage=f"{stage} retraining")
    evaluation = job.evaluation
    clean = accuracy(model.predict(evaluation.x), evaluation.y)
    measured = success(
        model, attack, evaluation.x, evaluation.y, job.num_classes, job.baseline_accuracy, poisoned.target
    )
    return {
        "n_removed": int(len(suspected)),
        "poisons_left": int(len(np.setdiff1d(poisoned.indices, suspected))),
        "clean_accuracy": clean,
        **measured,
    }


def baseline_detection(job: PoisoningJob) -> list[dict[str, Any]]:
    """Every detector on the clean training set and the clean baseline: a clean model flags nothing."""
    baseline = job.need_baseline()
    data = detection_data(job, baseline, job.train.x, job.train.y, None)
    rows = []
    for detector in job.detectors:
        result = detector.detect(data)
        job.advance(len(job.train.y), f"clean baseline: {detector.name}")
        row = summarize(detector, result)
        row["params"] = detector.params()
        row["paper"] = detector.paper
        rows.append(row)
        flagged = result.flagged_classes
        job.check(
            f"{detector.name}: clean model flags no class",
            not flagged,
            f"on the clean training set and baseline it flags classes {', '.join(str(c) for c in flagged)}"
            if flagged
            else "no class of the clean training set is flagged on the clean baseline",
        )
    return rows
