"""FastAPI dependencies: a session per request and the caller's service context."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth import KeyCache, bearer_key_hash
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


# Declares the bearer scheme in the OpenAPI; the header itself is checked by get_context.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer <api key>`; create a key with `gauntlet keys create --tenant NAME`",
)


async def get_autocommit_session(request: Request) -> AsyncIterator[Session]:
    """A session whose connection runs in autocommit: each statement is its own transaction.

    For the hot routes whose statements need no transaction around them (a status read, a submission:
    reads, then one INSERT): no BEGIN before the first query, no ROLLBACK or COMMIT after, two round trips
    fewer, and closing it does no I/O on the event loop. Under READ COMMITTED each statement took its own
    snapshot anyway, so what they read is unchanged.
    """
    session = request.app.state.autocommit_session_factory()
    try:
        yield session
    finally:
        session.close()


async def _authenticate(request: Request, session: Session) -> ServiceContext:
    """The caller's context over `session`; 401 without a valid key.

    A key resolved in the last few seconds (settings.api_key_cache_s) costs a dictionary look-up on the
    event loop; only a cache miss reads the key from the database, in the thread pool.
    """
    key_hash = bearer_key_hash(request.headers.get("authorization"))
    cache: KeyCache = request.app.state.key_cache
    caller = cache.get(key_hash)
    if caller is None:
        caller = await run_in_threadpool(cache.resolve, session, key_hash)
    return ServiceContext(
        session=session,
        tenant_id=caller.tenant_id,
        settings=request.app.state.settings,
        queue=request.app.state.queue,
        tenant_name=caller.tenant_name,
    )


async def get_context(
    request: Request,
    session: Annotated[Session, Depends(get_session)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> ServiceContext:
    """The authenticated caller's context (its session transactional, as usual); 401 without a valid key."""
    return await _authenticate(request, session)


async def get_autocommit_context(
    request: Request,
    session: Annotated[Session, Depends(get_autocommit_session)],
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> ServiceContext:
    """The authenticated caller's context over an autocommit session; 401 without a valid key."""
    return await _authenticate(request, session)


Context = Annotated[ServiceContext, Depends(get_context)]
# Only for routes whose statements need no transaction around them (see get_autocommit_session).
AutocommitContext = Annotated[ServiceContext, Depends(get_autocommit_context)]
