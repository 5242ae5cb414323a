"""Typed parameters from a validated spec: a dataclass's init fields, unknown and missing keys refused."""

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")


def dataclass_from_spec(cls: type[T], spec: Mapping[str, Any], label: str) -> T:
    """cls(**spec) for a dataclass; ValueError naming unknown keys and keys without a default."""
    known = [field for field in fields(cls) if field.init]  # type: ignore[arg-type]
    unknown = sorted(set(spec) - {field.name for field in known})
    if unknown:
        raise ValueError(f"{label}: unknown parameters {', '.join(unknown)}")
    missing = sorted(
        field.name
        for field in known
        if field.name not in spec and field.default is MISSING and field.default_factory is MISSING
    )
    if missing:
        raise ValueError(f"{label}: missing parameters {', '.join(missing)}")
    return cls(**dict(spec))


def dataclass_params(instance: object) -> dict[str, Any]:
    """The init fields of a dataclass instance; nested values with `params()` are expanded."""
    values = {}
    for field in fields(instance):  # type: ignore[arg-type]
        if field.init:
            value = getattr(instance, field.name)
            values[field.name] = value.params() if hasattr(value, "params") else value
    return values
