"""A backdoor repair job: scan, repair, export, and measure the exported model against the original.

Every figure is measured through onnxruntime on exported bytes, on the held-out set: clean accuracy,
the real trigger's success when the user gives it, and the success of Neural Cleanse's reversed
triggers (reversed once, on the original model, and stamped on both). The scan runs again on the
repaired model, so the report says whether a class still stands out.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from worker.engine.batching import batch_bounds
from worker.engine.defense.repair.base import Repair, RepairContext
from worker.engine.poisoning.attacks.triggers import Trigger
from worker.engine.poisoning.scan.base import Classify, ScanData, ScanResult, trigger_success
from worker.engine.poisoning.scan.neural_cleanse import NeuralCleanse, neural_cleanse


@dataclass(frozen=True)
class RealTrigger:
    """The trigger the user knows was planted, and the class it sends inputs to."""

    trigger: Trigger
    target: int


@dataclass
class RepairOutcome:
    """The report body, the repaired graph's bytes, and the reversed triggers (mask and pattern)."""

    report: dict[str, Any]
    onnx: bytes
    triggers: dict[int, Trigger] = field(default_factory=dict)


def scan_section(result: ScanResult) -> dict[str, Any]:
    """The report section of a scan: statistic, threshold, per-class rows, flagged classes."""
    return {
        "scanner": result.scanner,
        "paper": result.paper,
        "statistic": "anomaly index of the reversed trigger's mask l1 norm (median absolute deviation)",
        "threshold": result.threshold,
        "flagged": result.flagged,
        "classes": [finding.as_dict() for finding in result.classes],
    }


def accuracy(classify: Classify, x: np.ndarray, y: np.ndarray) -> float:
    """Clean accuracy of a NumPy classifier."""
    right = sum(int((classify(x[a:b]).argmax(1) == y[a:b]).sum()) for a, b in batch_bounds(len(x), 1024))
    return right / max(len(x), 1)


def _figures(
    classify: Classify, x: np.ndarray, y: np.ndarray, reversed_: dict[int, Trigger], real: RealTrigger | None
) -> dict[str, Any]:
    """Clean accuracy, the real trigger's and each reversed trigger's success, for one model."""
    out: dict[str, Any] = {
        "clean_accuracy": accuracy(classify, x, y),
        "reversed_trigger_success": {
            str(k): trigger_success(classify, t, x, y, k) for k, t in reversed_.items()
        },
    }
    if real is not None:
        out["real_trigger_success"] = trigger_success(classify, real.trigger, x, y, real.target)
    return out


def run_repair(
    method: Repair,
    context: RepairContext,
    *,
    held_out: tuple[np.ndarray, np.ndarray],
    original: Classify,
    export: Callable[[nn.Module], bytes],
    load: Callable[[bytes], tuple[nn.Module, Classify]],
    scanner: NeuralCleanse | None = None,
    real: RealTrigger | None = None,
) -> RepairOutcome:
    """Scan the model, repair its graph in place, export it, and compare the two on the held-out set.

    `original` classifies with the model as uploaded; `export` writes the repaired graph back into
    the user's graph (verified); `load` gives the exported bytes as a module and a classifier, on
    inputs in the input range.
    """
    scanner = scanner or neural_cleanse()
    x, y = held_out
    scan_data = ScanData(
        context.x, context.y, context.num_classes, context.input_range, context.seed, context.progress
    )
    before_scan = scanner.scan(context.model(), scan_data)
    reversed_ = dict(before_scan.triggers)
    context.reverse = lambda _: reversed_
    before = _figures(original, x, y, reversed_, real)
    result = method.repair(context)
    onnx = export(context.graph)
    module, classify = load(onnx)
    after = _figures(classify, x, y, reversed_, real)
    after_scan = scanner.scan(module, scan_data)
    report = {
        "method": {"name": method.name, "paper": method.paper, "params": method.params()},
        "before": before,
        "after": after,
        "repair": result.summary(),
        "training_curve": result.history.curve() if result.history else [],
        "scan_before": scan_section(before_scan),
        "scan_after": scan_section(after_scan),
        "n_clean": int(len(context.x)),
        "n_held_out": int(len(x)),
    }
    if real is not None:
        report["real_trigger"] = {"target_class": real.target}
    return RepairOutcome(report, onnx, reversed_)


def progress_units(method: Repair, scanner: NeuralCleanse, n_clean: int) -> float:
    """Progress units of a repair job: two scans and the method."""
    return 2.0 * scanner.spec.steps + method.units_of_work(n_clean)
