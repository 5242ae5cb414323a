"""FastAPI dependencies: a session per request and the caller's service context."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth import tenant_for_authorization
from app.services.context import ServiceContext


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A database session closed when the request ends.

    Async on purpose: making the session opens nothing (the connection is taken on its first query, in
    the route's thread) and closing hands the connection back, so neither needs a trip through the
    thread pool (a synchronous generator dependency costs two per request).
    """
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.close()


# Declares the bearer scheme in the OpenAPI; the header itself is checked by tenant_for_authorization.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer <api key>`; create a key with `gauntlet keys create --tenant NAME`",
)


def get_context(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> ServiceContext:
    """The authenticated caller's context; 401 without a valid key."""
    tenant_id = tenant_for_authorization(session, request.headers.get("authorization"))
    return ServiceContext(
        session=session,
        tenant_id=tenant_id,
        settings=request.app.state.settings,
        queue=request.app.state.queue,
    )


Context = Annotated[ServiceContext, Depends(get_context)]
