"""The base of engine objects built from one typed, validated spec; registries key them by the spec type."""

from typing import Any, ClassVar

from pydantic import BaseModel


class FromSpec:
    """Keeps the spec it is built from (of `spec_type`, the registry's key): parameters, defaults and facts
    live there, not in the engine class."""

    spec_type: ClassVar[type[BaseModel]]

    def __init__(self, spec: BaseModel) -> None:
        """Keep the validated spec (of this class's spec_type)."""
        if not isinstance(spec, self.spec_type):
            raise TypeError(f"{type(self).__name__} is built from {self.spec_type.__name__}")
        self.spec = spec

    @property
    def name(self) -> str:
        """The name the spec gives."""
        return str(self.spec.model_dump(include={"name"})["name"])

    def params(self) -> dict[str, Any]:
        """Effective parameters for the report: the spec without its name (spec names, aliases included)."""
        return self.spec.model_dump(mode="json", by_alias=True, exclude={"name"})
