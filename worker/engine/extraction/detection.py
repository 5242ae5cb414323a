"""Detectors of extraction over a client's query stream, seen from the server side."""

import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np

from worker.engine.progress import ProgressTracker


class Detector(ABC):
    """Watches one client's queries (inputs and the victim's labels) and says when it raises an alarm."""

    name: ClassVar[str]
    paper: ClassVar[str]
    SPEC_KEYS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Build from a spec entry; unknown keys are an error, None keeps the default."""
        unknown = sorted(set(spec) - {"name", *cls.SPEC_KEYS})
        if unknown:
            raise ValueError(f"detector {cls.name}: unknown parameters {', '.join(unknown)}")
        return cls(**{key: spec[key] for key in cls.SPEC_KEYS if spec.get(key) is not None})

    def params(self) -> dict[str, Any]:
        """Effective parameters, for the report."""
        return {key: getattr(self, key) for key in self.SPEC_KEYS}

    @abstractmethod
    def alarm_at(
        self, x: np.ndarray, labels: np.ndarray, progress: ProgressTracker | None = None
    ) -> int | None:
        """The 1-based number of the query at which the first alarm is raised, or None."""


class Prada(Detector):
    """PRADA: the distribution of distances between a client's queries.

    Paper: Juuti, Szyller, Marchal and Asokan, "PRADA: Protecting Against DNN Model Stealing Attacks",
    IEEE EuroS&P 2019.

    Threat model: server side; sees every query of one client and the victim's label for it. For each
    query of predicted class c, d = the smallest l2 distance to the growing set G_c; d joins the
    distances D; if d > T_c the query joins G_c and T_c = max(T_c, mean - std of G_c's distances).
    Every `check_every` queries, the distances of classes with at least `min_per_class` of them, minus
    outliers beyond 3 standard deviations, are tested with Shapiro-Wilk once there are more than
    `min_distances`: W < delta raises the alarm (natural queries give roughly normal distances,
    synthetic ones such as Jacobian augmentation do not).

    Parameters: delta (default 0.9), check_every (default 10), min_per_class (default 10),
    min_distances (default 100).
    """

    name = "prada"
    paper = "Juuti, Szyller, Marchal and Asokan, IEEE EuroS&P 2019"
    SPEC_KEYS = ("delta", "check_every", "min_per_class", "min_distances")

    def __init__(
        self, *, delta: float = 0.9, check_every: int = 10, min_per_class: int = 10, min_distances: int = 100
    ) -> None:
        """Validate the parameters."""
        if (
            not 0 < float(delta) < 1
            or int(check_every) < 1
            or int(min_per_class) < 1
            or int(min_distances) < 3
        ):
            raise ValueError("prada: delta in (0, 1), check_every and min_per_class >= 1, min_distances >= 3")
        self.delta, self.check_every = float(delta), int(check_every)
        self.min_per_class, self.min_distances = int(min_per_class), int(min_distances)

    def alarm_at(
        self, x: np.ndarray, labels: np.ndarray, progress: ProgressTracker | None = None
    ) -> int | None:
        """Replay the stream; the first query at which the Shapiro-Wilk test alarms."""
        from scipy.stats import shapiro

        flat = x.reshape(len(x), -1).astype(np.float64)
        growing: dict[int, list[np.ndarray]] = {}
        growing_distances: dict[int, list[float]] = {}
        thresholds: dict[int, float] = {}
        distances: dict[int, list[float]] = {}
        for index, (point, label) in enumerate(zip(flat, labels.tolist(), strict=True)):
            if label not in growing:
                growing[label], growing_distances[label], thresholds[label] = [point], [0.0], 0.0
            else:
                members = np.asarray(growing[label])
                d = float(np.sqrt(((members - point) ** 2).sum(axis=1)).min())
                distances.setdefault(label, []).append(d)
                if d > thresholds[label]:
                    growing[label].append(point)
                    growing_distances[label].append(d)
                    values = np.asarray(growing_distances[label])
                    thresholds[label] = max(thresholds[label], float(values.mean() - values.std()))
            if index % self.check_every == 0:
                pooled = np.asarray(
                    [d for ds in distances.values() if len(ds) >= self.min_per_class for d in ds]
                )
                if len(pooled):
                    pooled = (
                        pooled[np.abs(pooled - pooled.mean()) < 3 * pooled.std()]
                        if pooled.std() > 0
                        else pooled
                    )
                if len(pooled) > self.min_distances and _shapiro_w(shapiro, pooled) < self.delta:
                    return index + 1
                if progress is not None:
                    progress.advance(self.check_every, "prada")
        return None


def _shapiro_w(shapiro: Any, values: np.ndarray) -> float:
    """The Shapiro-Wilk statistic W (scipy warns that p-values are rough past 5000 samples; W is not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(shapiro(values).statistic)


DETECTORS: dict[str, type[Detector]] = {detector.name: detector for detector in (Prada,)}


def detector_class(name: str) -> type[Detector]:
    """The detector registered under name; ValueError for an unknown one."""
    try:
        return DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(sorted(DETECTORS))}") from None
