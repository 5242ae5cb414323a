"""FastAPI dependencies: a session per request and the caller's service context."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from app.auth import tenant_for_authorization
from app.services.context import ServiceContext


def get_session(request: Request) -> Iterator[Session]:
    """A database session closed when the request ends."""
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.close()


def get_context(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    authorization: Annotated[str | None, Header()] = None,
) -> ServiceContext:
    """The authenticated caller's context; 401 without a valid key."""
    tenant_id = tenant_for_authorization(session, authorization)
    return ServiceContext(
        session=session,
        tenant_id=tenant_id,
        settings=request.app.state.settings,
        queue=request.app.state.queue,
    )


Context = Annotated[ServiceContext, Depends(get_context)]
