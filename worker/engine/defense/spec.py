"""Typed defense and transform parameters built from validated spec entries (closed, named keys)."""

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, Self

from worker.engine.errors import EngineError


class SpecError(EngineError, ValueError):
    """A spec entry that cannot be built; the message names the offending keys or values."""

    default_code = "spec_invalid"


class WeightsMissing(SpecError):
    """The defense needs the uploaded model's weights (a wrapper, init "pretrained", an uploaded teacher),
    and the model is an architecture without weights."""


class FromSpec:
    """Mixin for frozen dataclasses: `from_spec` rejects unknown keys and names missing ones.

    The entry's `name` key selects the class in a registry and is not a field. A value of None keeps
    the field's default (the API serialises omitted optional fields as null).
    """

    name: str

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Self:
        """Build from a spec entry; raises SpecError on unknown or missing keys or invalid values."""
        known = {item.name for item in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(spec) - known - {"name"})
        if unknown:
            raise SpecError(
                f"{cls.name}: unknown parameters {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        required = [
            item.name
            for item in fields(cls)  # type: ignore[arg-type]
            if item.default is MISSING and item.default_factory is MISSING and spec.get(item.name) is None
        ]
        if required:
            raise SpecError(f"{cls.name}: missing parameters {', '.join(required)}")
        try:
            return cls(**{key: value for key, value in spec.items() if key != "name" and value is not None})
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{cls.name}: {exc}") from exc


def check_range(label: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    """Raise ValueError unless low <= value <= high (low < value with low_open)."""
    if value != value or value > high or value < low or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{label} must lie in {bracket}{low:g}, {high:g}], got {value}")
