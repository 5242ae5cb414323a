"""Per-process resources of a worker: settings, database sessions and the queue client."""

import os
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_session_factory
from app.queue import JobQueue
from app.settings import Settings, get_settings


@dataclass
class WorkerRuntime:
    """What tasks and the reconciler share inside one process."""

    settings: Settings
    session_factory: sessionmaker[Session]
    queue: JobQueue


_runtimes: dict[int, WorkerRuntime] = {}


def runtime() -> WorkerRuntime:
    """This process's runtime; a forked child builds its own so no connection crosses a fork."""
    pid = os.getpid()
    if pid not in _runtimes:
        settings = get_settings()
        _runtimes[pid] = WorkerRuntime(
            settings=settings,
            session_factory=make_session_factory(make_engine(settings)),
            queue=JobQueue(settings),
        )
    return _runtimes[pid]
