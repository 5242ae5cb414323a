"""A module's own database on the test Postgres: live workers of other modules reconcile the shared one every
second and would claim rows a module wants to drive by hand."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_session_factory
from app.migrate import upgrade
from app.settings import Settings
from tests.services import create_database, drop_database


@contextmanager
def private_database(settings: Settings, **updates: Any) -> Iterator[Settings]:
    """The settings on a freshly migrated database of their own (with `updates`), dropped afterwards."""
    url = create_database()
    upgrade(url)
    try:
        yield settings.model_copy(update={"database_url": url, **updates})
    finally:
        drop_database(url)


@contextmanager
def session_factory_of(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """A session factory on the settings' database, its engine disposed afterwards."""
    engine = make_engine(settings)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
