"""Cursor pagination for every list: pages ordered by (created_at, id), cursors pointing after a row.

A cursor is the URL-safe base64 of `[created_at ISO, id]` of the last row of a page; the next page
holds the rows strictly after it in the list's order. It is the same for jobs, models, datasets and
artifacts; app.routes.params checks its form before it reaches a query.
"""

import base64
import json
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from app.errors import InvalidInput


class Listed(Protocol):
    """A row a list pages through: its creation time and id."""

    @property
    def created_at(self) -> datetime:
        """When the row was created."""

    @property
    def id(self) -> str:
        """The row's id."""


Row = TypeVar("Row", bound=Listed)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """An opaque cursor pointing after the row with this creation time and id."""
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; 422 `invalid_cursor` for anything else."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        created_iso, row_id = decoded if isinstance(decoded, list) and len(decoded) == 2 else (None, None)
        if not isinstance(created_iso, str) or not isinstance(row_id, str) or "\x00" in row_id:
            raise TypeError("cursor fields")
        created = datetime.fromisoformat(created_iso)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput(
            "cursor is not valid; pass back the next_cursor of a previous page", code="invalid_cursor"
        ) from exc
    return created, row_id


def fetch_page(
    session: Session,
    query: Select[Row],
    entity: Any,
    *,
    cursor: str | None,
    limit: int,
    newest_first: bool = True,
) -> tuple[list[Row], str | None]:
    """One page of `query` (already filtered by tenant) ordered by the entity's (created_at, id).

    Newest first by default, oldest first otherwise; the next page's cursor, or None on the last page.
    """
    created, ident = entity.created_at, entity.id
    if cursor is not None:
        after, after_id = decode_cursor(cursor)
        if newest_first:
            query = query.where(or_(created < after, and_(created == after, ident < after_id)))
        else:
            query = query.where(or_(created > after, and_(created == after, ident > after_id)))
    order = (created.desc(), ident.desc()) if newest_first else (created.asc(), ident.asc())
    rows: list[Row] = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)
