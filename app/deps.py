"""FastAPI dependencies: a session per request and the caller's service context."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
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
