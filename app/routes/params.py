"""Path and query parameters shared by the routes, validated before any service sees them."""

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated

from fastapi import Path, Query

from app.errors import InvalidInput

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$"
MAX_CURSOR_CHARS = 512


def _id(description: str) -> object:
    """A path parameter holding an object id (letters, digits and `_.:-`, at most 100 characters)."""
    return Path(description=description, max_length=100, pattern=ID_PATTERN)


ModelId = Annotated[str, _id("a model id, `mdl_...`")]
DatasetId = Annotated[str, _id("a dataset id, `ds_...` or `builtin:<name>`")]
JobId = Annotated[str, _id("a job id, `job_...`")]
ArtifactId = Annotated[str, _id("an artifact id, `art_...`")]


def job_cursor(
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_CHARS, description="the next_cursor of the previous page"),
    ] = None,
) -> str | None:
    """A pagination cursor, checked to decode to [ISO timestamp, job id] before it reaches a query."""
    if cursor is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        created, job_id = decoded if isinstance(decoded, list) else (None, None)
        if not isinstance(created, str) or not isinstance(job_id, str) or "\x00" in job_id:
            raise ValueError("cursor fields")
        datetime.fromisoformat(created)
    except (ValueError, TypeError, RecursionError, binascii.Error, UnicodeError) as exc:
        raise InvalidInput(
            "cursor is not valid; pass back the next_cursor of a previous page", code="invalid_cursor"
        ) from exc
    return cursor
