"""Path and query parameters shared by the routes, validated before any service sees them."""

from typing import Annotated

from fastapi import Depends, Path, Query

from app.services.pagination import decode_cursor

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$"
MAX_CURSOR_CHARS = 512
MAX_PAGE = 100


def _id(description: str) -> object:
    """A path parameter holding an object id (letters, digits and `_.:-`, at most 100 characters)."""
    return Path(description=description, max_length=100, pattern=ID_PATTERN)


ModelId = Annotated[str, _id("a model id, `mdl_...`")]
DatasetId = Annotated[str, _id("a dataset id, `ds_...` or `builtin:<name>`")]
JobId = Annotated[str, _id("a job id, `job_...`")]
ArtifactId = Annotated[str, _id("an artifact id, `art_...`")]


def page_cursor(
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_CURSOR_CHARS, description="the next_cursor of the previous page"),
    ] = None,
) -> str | None:
    """A pagination cursor, checked to decode to [ISO timestamp, id] before it reaches a query."""
    if cursor is not None:
        decode_cursor(cursor)
    return cursor


Cursor = Annotated[str | None, Depends(page_cursor)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"items per page, 1 to {MAX_PAGE}")]
