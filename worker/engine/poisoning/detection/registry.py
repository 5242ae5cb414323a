"""The one registry of poison detectors by enumerated name."""

from collections.abc import Mapping
from typing import Any

from worker.engine.poisoning.detection.activation_clustering import ActivationClustering
from worker.engine.poisoning.detection.base import Detector
from worker.engine.poisoning.detection.spectral_signatures import SpectralSignatures
from worker.engine.poisoning.detection.strip import Strip

DETECTORS: dict[str, type[Detector]] = {
    detector.name: detector for detector in (ActivationClustering, SpectralSignatures, Strip)
}


def build_detector(spec: Mapping[str, Any]) -> Detector:
    """The detector of a spec entry ({name, **params}); ValueError for an unknown name or parameter."""
    entry = dict(spec)
    name = entry.pop("name", None)
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name].from_spec(entry)
