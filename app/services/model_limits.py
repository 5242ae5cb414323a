"""Limits checked when a model is registered, before anything is stored or queued."""

import json
import math

from app.errors import InvalidInput


def check_declared_shape(shape: object, max_elements: int) -> None:
    """422 `input_too_large` when a declared input shape's samples exceed max_elements."""
    if not isinstance(shape, list) or not shape:
        return  # the schema reports a malformed shape
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        return
    elements = math.prod(shape)
    if elements > max_elements:
        raise InvalidInput(
            f"input_shape {shape} has {elements} elements per sample; this service accepts at most "
            f"{max_elements} (setting max_input_elements)",
            code="input_too_large",
        )


def _decoded(raw: str | bytes) -> object:
    """A JSON value, or None when it does not decode (the service reports that)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def check_form_shape(raw: str | None, max_elements: int) -> None:
    """The declared shape of a multipart upload's `input_shape` field."""
    if raw is not None:
        check_declared_shape(_decoded(raw), max_elements)
