"""Detectors of extraction over a client's query stream, seen from the server side."""

import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from app.schemas.extraction import PradaParams
from worker.engine.from_spec import FromSpec
from worker.engine.progress import ProgressTracker


class Detector(FromSpec, ABC):
    """Watches one client's queries (inputs and the victim's labels) and says when it raises an alarm;
    built from its typed spec (`spec_type`)."""

    spec: PradaParams
    paper: ClassVar[str]

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

    spec_type = PradaParams
    paper = "Juuti, Szyller, Marchal and Asokan, IEEE EuroS&P 2019"

    def alarm_at(
        self, x: np.ndarray, labels: np.ndarray, progress: ProgressTracker | None = None
    ) -> int | None:
        """Replay the stream; the first query at which the Shapiro-Wilk test alarms."""
        from scipy.stats import shapiro

        spec = self.spec
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
            if index % spec.check_every == 0:
                pooled = np.asarray(
                    [d for ds in distances.values() if len(ds) >= spec.min_per_class for d in ds]
                )
                if len(pooled):
                    pooled = (
                        pooled[np.abs(pooled - pooled.mean()) < 3 * pooled.std()]
                        if pooled.std() > 0
                        else pooled
                    )
                if len(pooled) > spec.min_distances and _shapiro_w(shapiro, pooled) < spec.delta:
                    return index + 1
                if progress is not None:
                    progress.advance(spec.check_every, "prada")
        return None


def _shapiro_w(shapiro: Any, values: np.ndarray) -> float:
    """The Shapiro-Wilk statistic W (scipy warns that p-values are rough past 5000 samples; W is not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(shapiro(values).statistic)


DETECTORS: dict[type[PradaParams], type[Detector]] = {detector.spec_type: detector for detector in (Prada,)}


def build_detector(spec: PradaParams) -> Detector:
    """The detector of a typed spec."""
    return DETECTORS[type(spec)](spec)
