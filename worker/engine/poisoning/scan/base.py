"""What a scan reads and finds: clean inputs, per-class reversed triggers, and the MAD anomaly index."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from app.schemas.poisoning_scan import B3DScanParams, NeuralCleanseScanParams
from worker.engine.batching import batch_bounds
from worker.engine.from_spec import FromSpec
from worker.engine.poisoning.attacks.triggers import Trigger
from worker.engine.progress import ProgressTracker

Classify = Callable[[np.ndarray], np.ndarray]
MAD_CONSISTENCY = 1.4826  # the median absolute deviation of a normal sample times this estimates sigma
ScannerSpec = NeuralCleanseScanParams | B3DScanParams


@dataclass
class ScanData:
    """A small clean held-out set (inputs in the input range, true labels) and the model's signature."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    input_range: tuple[float, float]
    seed: int = 0
    progress: ProgressTracker | None = None

    def __post_init__(self) -> None:
        """Refuse what no scan can run on: fewer than 3 classes, non-image inputs, an empty set."""
        if self.num_classes < 3:
            raise ValueError("a backdoor scan needs a model with at least 3 classes (the MAD needs a median)")
        if self.x.ndim != 4:
            raise ValueError(
                f"a backdoor scan needs image inputs [channels, height, width], not {list(self.x.shape[1:])}"
            )
        if len(self.x) < 2 or len(self.x) != len(self.y):
            raise ValueError("a backdoor scan needs at least 2 labelled clean inputs")


@dataclass
class ClassFinding:
    """One class: its reversed trigger's mask l1 norm, anomaly index, flag and success on clean inputs."""

    label: int
    norm: float
    anomaly_index: float
    flagged: bool
    success: float

    def as_dict(self) -> dict[str, Any]:
        """Report row."""
        return {
            "label": self.label,
            "mask_l1": self.norm,
            "anomaly_index": self.anomaly_index,
            "flagged": self.flagged,
            "trigger_success": self.success,
        }


@dataclass
class ScanResult:
    """Per-class findings, the flagged classes and the reversed triggers worth showing."""

    scanner: str
    paper: str
    threshold: float
    classes: list[ClassFinding]
    triggers: dict[int, Trigger]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> list[int]:
        """Classes whose anomaly index passed the threshold."""
        return [c.label for c in self.classes if c.flagged]

    @property
    def suspect(self) -> int:
        """The flagged class with the highest index, else the most anomalous small-trigger class."""
        small = [c for c in self.classes if c.norm <= float(np.median([d.norm for d in self.classes]))]
        return max(small or self.classes, key=lambda c: c.anomaly_index).label

    def shown(self) -> list[int]:
        """The classes whose reversed triggers the report shows: the flagged ones, else the suspect."""
        return self.flagged or [self.suspect]


def anomaly_indices(norms: np.ndarray) -> np.ndarray:
    """|norm - median| / (1.4826 * MAD) per class, signed negative for norms below the median."""
    norms = np.asarray(norms, dtype=np.float64)
    median = float(np.median(norms))
    mad = MAD_CONSISTENCY * float(np.median(np.abs(norms - median)))
    return (norms - median) / max(mad, 1e-12)


def findings(norms: np.ndarray, success: np.ndarray, threshold: float) -> list[ClassFinding]:
    """Per class: flagged when its trigger is smaller than the median by more than `threshold` MADs."""
    signed = anomaly_indices(norms)
    return [
        ClassFinding(
            k, float(norms[k]), float(abs(signed[k])), bool(-signed[k] > threshold), float(success[k])
        )
        for k in range(len(norms))
    ]


def trigger_success(classify: Classify, trigger: Trigger, x: np.ndarray, y: np.ndarray, target: int) -> float:
    """The share of clean inputs of other classes that the trigger sends to `target`."""
    others = x[y != target]
    if len(others) == 0:
        return 0.0
    hits = 0
    for start, stop in batch_bounds(len(others), 1024):
        hits += int((classify(trigger.apply(others[start:stop])).argmax(axis=1) == target).sum())
    return hits / len(others)


def to_trigger(mask: np.ndarray, pattern: np.ndarray) -> Trigger:
    """A reversed [H, W] mask broadcast over channels, and its [C, H, W] pattern, as a Trigger."""
    full = np.broadcast_to(mask[None], pattern.shape).astype(np.float32)
    return Trigger(mask=np.ascontiguousarray(full), pattern=pattern.astype(np.float32))


class Scanner(FromSpec, ABC):
    """Base class of model scanners, built from the scanner's typed spec (`spec_type`: its parameters,
    published defaults and whether it needs gradients through the model, `white_box`)."""

    spec_type: ClassVar[type[ScannerSpec]]
    spec: ScannerSpec
    paper: ClassVar[str]

    @property
    def white_box(self) -> bool:
        """Whether the scanner needs gradients through the model (a local graph): its spec's fact."""
        return self.spec.white_box

    @abstractmethod
    def scan(self, model: Any, data: ScanData) -> ScanResult:
        """Reverse-engineer a trigger per class and flag the anomalous ones."""
