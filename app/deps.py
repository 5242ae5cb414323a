"""FastAPI dependencies: a session per request and the caller's service context."""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.auth import Caller, KeyCache, bearer_key_hash
from app.services.context import ServiceContext


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A database session closed when the request ends.

    Async on purpose: making the session opens nothing (the connection is taken on its first query, in
    the route's thread), so it needs no trip through the thread pool (a synchronous generator dependency
    costs two per request). Closing it on the event loop rolls back a transaction a route left open (one
    round trip there); the hot routes avoid that with autocommit (get_autocommit_session, get_reader).
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
    caller = await _caller(request, lambda cache, key_hash: cache.resolve(session, key_hash))
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


@dataclass(frozen=True)
class Reader:
    """What a read that needs neither a session nor a transaction gets: the caller's tenant and the
    autocommit engine (a status read takes a connection from it in its thread and hands it back there)."""

    tenant_id: str
    engine: Engine


async def _caller(request: Request, resolve_miss: Callable[[KeyCache, str], Caller]) -> Caller:
    """The caller of the request's key: from the key cache on the event loop, else `resolve_miss` (a
    database look-up) in the thread pool; 401 without a valid key."""
    key_hash = bearer_key_hash(request.headers.get("authorization"))
    cache: KeyCache = request.app.state.key_cache
    cached = cache.get(key_hash)
    return cached if cached is not None else await run_in_threadpool(resolve_miss, cache, key_hash)


def _resolve_key(factory: sessionmaker[Session], cache: KeyCache, key_hash: str) -> Caller:
    """A key cache miss, in a session of its own (opened and closed in the calling thread)."""
    with factory() as session:
        return cache.resolve(session, key_hash)


async def get_reader(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Reader:
    """The authenticated caller of a read without a session: no session object, no generator dependency
    to unwind; a cached key costs a dictionary look-up on the event loop; 401 without a valid key."""
    state = request.app.state
    caller = await _caller(request, partial(_resolve_key, state.autocommit_session_factory))
    return Reader(tenant_id=caller.tenant_id, engine=state.autocommit_engine)


Context = Annotated[ServiceContext, Depends(get_context)]
# Only for routes whose statements need no transaction around them (see get_autocommit_session).
AutocommitContext = Annotated[ServiceContext, Depends(get_autocommit_context)]
ReaderContext = Annotated[Reader, Depends(get_reader)]
