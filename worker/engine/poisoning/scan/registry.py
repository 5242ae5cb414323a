"""The model scanners by name; the API's enumeration and the worker read it."""

from typing import Any

from worker.engine.poisoning.scan.b3d import B3D
from worker.engine.poisoning.scan.base import Scanner
from worker.engine.poisoning.scan.neural_cleanse import NeuralCleanse

SCANNERS: dict[str, type[Scanner]] = {cls.name: cls for cls in (NeuralCleanse, B3D)}


def build_scanner(spec: dict[str, Any]) -> Scanner:
    """A scanner from a spec entry with its `name`; ValueError for an unknown name or bad parameters."""
    params = dict(spec)
    name = str(params.pop("name", ""))
    if name not in SCANNERS:
        raise ValueError(f"unknown scanner {name!r}; available: {', '.join(SCANNERS)}")
    return SCANNERS[name].from_spec({k: v for k, v in params.items() if v is not None})
