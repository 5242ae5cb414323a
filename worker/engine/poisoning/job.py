"""What every step of a poisoning job shares: the data, the victim setup, the clean baseline."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.engine.datasets import ArrayDataset
from worker.engine.poisoning.detection.base import Detector
from worker.engine.poisoning.victim import Exported, VictimSetup


@dataclass
class RegisteredVictim:
    """A poisoned victim to register as a derived model: verified ONNX bytes and where it came from."""

    attack_index: int
    attack: str
    rate: float
    onnx: bytes
    intake: Any


@dataclass
class PoisoningJob:
    """The shared state of one run: the victim setup, the data, the baseline and the detectors."""

    setup: VictimSetup
    train: ArrayDataset
    evaluation: ArrayDataset
    detectors: list[Detector]
    retrain_after_removal: bool
    register: bool
    baseline: Exported | None = None
    baseline_accuracy: float = 0.0
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    victims: list[RegisteredVictim] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    # params.repair: worker.engine.poisoning.repair_step.RepairPlan per method, run on backdoor victims.
    repairs: list[Any] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        """The model's class count."""
        return self.setup.num_classes

    @property
    def input_range(self) -> tuple[float, float]:
        """The declared input range."""
        return self.setup.input_range

    def need_baseline(self) -> Exported:
        """The clean baseline (trained first)."""
        if self.baseline is None:
            raise RuntimeError("the clean baseline is trained first")
        return self.baseline

    def advance(self, units: float, stage: str) -> None:
        """Report progress (the callback may raise to cancel)."""
        if self.setup.progress is not None:
            self.setup.progress.advance(units, stage)

    def check(self, name: str, passed: bool, detail: str) -> None:
        """Record one check of the report."""
        self.checks.append({"name": name, "passed": bool(passed), "detail": detail})
