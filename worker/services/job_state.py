"""Guarded job state transitions: every write names the attempt that owns the job."""

import os
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.orm import Job, utcnow


class JobCancelled(Exception):
    """The caller asked for the job to stop."""


class JobLost(Exception):
    """This attempt no longer owns the job (it was recovered and handed to another worker)."""


class JobFailure(Exception):
    """An expected failure with a stable code for `error.code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claim:
    """Proof that this worker runs this attempt of the job."""

    job_id: str
    attempt: int


def worker_identity() -> str:
    """Host and pid of this process, recorded on the jobs it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_job(session: Session, job_id: str) -> Claim | None:
    """Move a queued job to running; None if it is not queued (already run, running or cancelled)."""
    now = utcnow()
    attempts = session.scalar(select(Job.attempts).where(Job.id == job_id))
    if attempts is None:
        return None
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == "queued",
            Job.attempts == attempts,
            Job.cancel_requested.is_(False),
        )
        .values(
            status="running",
            attempts=attempts + 1,
            started_at=now,
            heartbeat_at=now,
            progress=0.0,
            stage="starting",
            worker_id=worker_identity(),
            error_code=None,
            error_message=None,
        )
    )
    session.commit()
    return Claim(job_id, attempts + 1) if result.rowcount == 1 else None


def _owned(claim: Claim) -> tuple:
    """The WHERE clause that says this attempt still owns the running job."""
    return (Job.id == claim.job_id, Job.status == "running", Job.attempts == claim.attempt)


def record_progress(session: Session, claim: Claim, progress: float, stage: str) -> bool:
    """Write progress and a heartbeat; returns whether cancellation was requested."""
    result = session.execute(
        update(Job).where(*_owned(claim)).values(progress=progress, stage=stage[:200], heartbeat_at=utcnow())
    )
    session.commit()
    if result.rowcount != 1:
        raise JobLost(claim.job_id)
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == claim.job_id)))


def beat(session: Session, claim: Claim) -> None:
    """Refresh the heartbeat of a running attempt."""
    session.execute(update(Job).where(*_owned(claim)).values(heartbeat_at=utcnow()))
    session.commit()


def finish(session: Session, claim: Claim, status: str, **values: object) -> bool:
    """Move the attempt's job to a terminal state (in the session's transaction); False if not owned."""
    now: datetime = utcnow()
    result = session.execute(
        update(Job).where(*_owned(claim)).values(status=status, finished_at=now, heartbeat_at=now, **values)
    )
    return result.rowcount == 1
