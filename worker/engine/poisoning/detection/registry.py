"""The one registry of poison detectors, keyed by the spec type each engine class is built from."""

from worker.engine.poisoning.detection.activation_clustering import ActivationClustering
from worker.engine.poisoning.detection.base import Detector, DetectorSpec
from worker.engine.poisoning.detection.spectral_signatures import SpectralSignatures
from worker.engine.poisoning.detection.strip import Strip

DETECTORS: dict[type[DetectorSpec], type[Detector]] = {
    detector.spec_type: detector for detector in (ActivationClustering, SpectralSignatures, Strip)
}


def build_detector(spec: DetectorSpec) -> Detector:
    """The engine detector of a validated spec entry; ValueError for a spec type without one."""
    engine = DETECTORS.get(type(spec))
    if engine is None:
        raise ValueError(f"no detector is built from {type(spec).__name__}")
    return engine(spec)
