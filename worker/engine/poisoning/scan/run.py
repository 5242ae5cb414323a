"""Scan mode of a poisoning job: is the model under test trojaned? Each scanner per class, and advice."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from worker.engine.poisoning.scan.base import Classify, ScanData, ScannerSpec, ScanResult
from worker.engine.poisoning.scan.registry import build_scanner
from worker.engine.progress import ProgressCallback, ProgressTracker
from worker.engine.reports.png import chw_to_png


@dataclass
class ScanOutcome:
    """The report body, the reversed triggers (one .npz per scanner) and their pictures (PNG)."""

    report: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)


def advice(result: ScanResult) -> str:
    """What the user should do, from one scanner's finding."""
    if result.flagged:
        classes = ", ".join(str(c) for c in result.flagged)
        return (
            f"Treat the model as backdoored towards class {classes}: a small trigger sends most clean inputs "
            "there. Do not deploy it as is; repair it (a defense job backdoor_repair, method neural_cleanse "
            "or anp) and scan the repaired model, or obtain the model from a source you trust."
        )
    return (
        f"No class stands out (every anomaly index at most {result.threshold:g}). This lowers, not removes, "
        "the risk: triggers larger than the typical class's reversed trigger, or attacks that are not "
        "all-to-one, can pass a scan; keep the clean set representative."
    )


def scanner_section(result: ScanResult, params: dict[str, Any], white_box: bool) -> dict[str, Any]:
    """One scanner's report section: statistic, threshold, per-class rows, flagged classes, advice."""
    return {
        "name": result.scanner,
        "paper": result.paper,
        "params": params,
        "white_box": white_box,
        "statistic": "anomaly index of the reversed trigger's mask l1 norm (median absolute deviation); "
        "a class is flagged when its mask is smaller than the median by more than the threshold",
        "threshold": result.threshold,
        "flagged_classes": result.flagged,
        "triggers_shown": sorted(result.triggers),
        "classes": [finding.as_dict() for finding in result.classes],
        "advice": advice(result),
        "details": {k: v for k, v in result.details.items() if k != "epochs"},
    }


def run_scan(
    scanners: Sequence[ScannerSpec | Mapping[str, Any]],
    *,
    module: nn.Module | None,
    classify: Classify,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    input_range: tuple[float, float],
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> ScanOutcome:
    """Run every scanner on the model: white-box ones on `module`, query-only ones on `classify`."""
    built = [build_scanner(spec) for spec in scanners]
    tracker = ProgressTracker(sum(float(s.spec.steps) for s in built), progress)
    data = ScanData(x, y, num_classes, input_range, seed, tracker)
    outcome = ScanOutcome(report={})
    sections = []
    for scanner in built:
        if scanner.white_box and module is None:
            raise ValueError(f"{scanner.name} needs the model's gradients; this model can only be queried")
        result = scanner.scan(module if scanner.white_box else classify, data)
        sections.append(scanner_section(result, scanner.params(), scanner.white_box))
        for label, trigger in result.triggers.items():
            name = f"{scanner.name}_class_{label}"
            outcome.arrays[name] = {"mask": trigger.mask, "pattern": trigger.pattern}
            outcome.images[name] = chw_to_png(trigger.image(input_range), input_range)
    flagged = sorted({c for s in sections for c in s["flagged_classes"]})
    accuracy = float(
        np.mean(np.concatenate([classify(x[i : i + 1024]).argmax(1) for i in range(0, len(x), 1024)]) == y)
    )
    outcome.report = {
        "mode": "scan",
        "n_train": 0,
        "n_eval": int(len(y)),
        "num_classes": num_classes,
        "input_shape": list(x.shape[1:]),
        "input_range": [float(input_range[0]), float(input_range[1])],
        "detectors": [],
        "scanners": sections,
        "suspected_classes": flagged,
        "model_accuracy": {"held_out": accuracy},
        "verdict": "backdoor suspected" if flagged else "no backdoor found",
        "checks": [],
    }
    return outcome
