"""The model scanners by the type of their spec; the worker builds them from the typed spec."""

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter

from app.schemas.poisoning_scan import PoisoningScanner
from worker.engine.poisoning.scan.b3d import B3D
from worker.engine.poisoning.scan.base import Scanner, ScannerSpec
from worker.engine.poisoning.scan.neural_cleanse import NeuralCleanse

SCANNERS: dict[type[ScannerSpec], type[Scanner]] = {cls.spec_type: cls for cls in (NeuralCleanse, B3D)}
_SPEC: TypeAdapter[ScannerSpec] = TypeAdapter(PoisoningScanner)


def build_scanner(spec: ScannerSpec | Mapping[str, Any]) -> Scanner:
    """The scanner of a typed spec; a library caller's mapping (with its `name`) is validated into that spec
    first (ValueError for an unknown name or bad parameters)."""
    if not isinstance(spec, NeuralCleanse.spec_type | B3D.spec_type):
        spec = _SPEC.validate_python({k: v for k, v in spec.items() if v is not None})
    return SCANNERS[type(spec)](spec)
