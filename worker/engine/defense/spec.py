"""Errors of a defense spec that does not fit the model or the data (the spec itself is typed and
validated by app.schemas.defense)."""

from worker.engine.errors import EngineError


class SpecError(EngineError, ValueError):
    """A spec that cannot run on this model or data; the message names the offending values."""

    default_code = "spec_invalid"


class WeightsMissing(SpecError):
    """The defense needs the uploaded model's weights (a wrapper, init "pretrained", an uploaded teacher),
    and the model is an architecture without weights."""
