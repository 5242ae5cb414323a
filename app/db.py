"""Database engine and sessions."""

import select
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of an SQLite database file, so a fresh machine needs no set-up."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def make_engine(settings: Settings) -> Engine:
    """Create the engine; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        ensure_sqlite_folder(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = create_engine(
        url, pool_size=settings.database_pool_size, max_overflow=settings.database_max_overflow
    )
    event.listen(engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Take no pooled connection that the server has closed (a restart, pg_terminate_backend, an idle
    timeout), without a round trip: the pool then opens a new one.

    An idle connection in the pool has nothing to read, so a readable socket means the server said
    goodbye (its termination message, or end of file). This replaces pool_pre_ping's `SELECT 1`, a round
    trip on every checkout, with a poll of the socket.
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        raise exc.DisconnectionError("the database connection is closed")
    try:
        fd = dbapi_connection.fileno()
        if hasattr(select, "poll"):  # no FD_SETSIZE limit
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            readable = bool(poller.poll(0))
        else:
            readable = bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError) as error:
        raise exc.DisconnectionError("the database connection's socket is gone") from error
    if readable:
        raise exc.DisconnectionError("the database server closed the connection")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def autocommit_engine(engine: Engine) -> Engine:
    """The engine on the same pool whose connections run in autocommit (each statement its own
    transaction): no BEGIN, COMMIT or ROLLBACK round trips. Only for work that needs no transaction
    around its statements."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def make_autocommit_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions over autocommit_engine(engine)."""
    return sessionmaker(autocommit_engine(engine), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
