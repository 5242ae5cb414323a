"""Guarded shard state: claim under the tenant's cap, progress, finish, and sending queued shards.

Every write names the shard's attempt, like a job's; a shard only runs while its job runs. Shards past
the tenant's cap wait in Postgres (enqueued_at unset) and are sent when a running one ends.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.orm import Job, JobShard, Tenant, utcnow
from app.storage import rowcount
from worker.runtime import WorkerRuntime
from worker.services.job_state import worker_identity

RUN_SHARD_TASK = "gauntlet.run_shard"
MERGING = "merging"  # the job's stage while a worker merges (its progress keeps it), beating its heartbeat
MERGE_PENDING = "merge pending"  # the reconciler sent a merge that no worker has taken yet


class ShardLost(Exception):
    """This attempt no longer owns the shard, or its job stopped running."""


@dataclass(frozen=True)
class ShardClaim:
    """Proof that this worker runs this attempt of the shard."""

    shard_id: str
    job_id: str
    tenant_id: str
    index: int
    attempt: int
    plan: dict[str, Any]


def _owned(claim: ShardClaim) -> tuple[ColumnElement[bool], ...]:
    """The WHERE clause that says this attempt still owns the running shard."""
    return (JobShard.id == claim.shard_id, JobShard.state == "running", JobShard.attempts == claim.attempt)


def _job_runs(job_id: str) -> Any:
    """The condition that the shard's job runs and nobody asked to cancel it."""
    return (
        select(Job.id)
        .where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
        .exists()
    )


def claim_shard(session: Session, shard_id: str, cap: int) -> ShardClaim | None:
    """Move a queued shard of a running job to running, if its tenant is under the cap; else None."""
    shard = session.get(JobShard, shard_id)
    if shard is None or shard.state != "queued":
        return None
    # One claim per tenant at a time (a row lock; SQLite serialises writers anyway), so the cap holds.
    session.execute(select(Tenant.id).where(Tenant.id == shard.tenant_id).with_for_update())
    running = session.scalar(
        select(func.count()).where(JobShard.tenant_id == shard.tenant_id, JobShard.state == "running")
    )
    if (running or 0) >= cap:
        session.execute(update(JobShard).where(JobShard.id == shard_id).values(enqueued_at=None))
        session.commit()
        return None
    now, attempt = utcnow(), shard.attempts + 1
    claimed = rowcount(
        session.execute(
            update(JobShard)
            .where(JobShard.id == shard_id, JobShard.state == "queued", JobShard.attempts == shard.attempts)
            .where(_job_runs(shard.job_id))
            .values(
                state="running",
                attempts=attempt,
                worker_id=worker_identity(),
                started_at=now,
                heartbeat_at=now,
                progress=0.0,
                finished_at=None,
                error_code=None,
                error_message=None,
            )  # fmt: skip
        )
    )
    session.commit()
    if claimed != 1:
        return None
    return ShardClaim(shard_id, shard.job_id, shard.tenant_id, shard.index, attempt, dict(shard.plan))


def record_shard_progress(session: Session, claim: ShardClaim, progress: float | None) -> None:
    """Write progress and a heartbeat; ShardLost when the shard or its job stopped (cancel included)."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = min(max(progress, 0.0), 1.0)
    written = rowcount(
        session.execute(
            update(JobShard).where(*_owned(claim)).where(_job_runs(claim.job_id)).values(**values)
        )
    )
    session.commit()
    if written != 1:
        raise ShardLost(claim.shard_id)


def finish_shard(session: Session, claim: ShardClaim, state: str, **values: object) -> bool:
    """Move the attempt's shard to a terminal state (in the session's transaction); False if not owned."""
    now = utcnow()
    result = session.execute(
        update(JobShard)
        .where(*_owned(claim))
        .values(state=state, finished_at=now, heartbeat_at=now, **values)
    )
    return rowcount(result) == 1


def send_shard(rt: WorkerRuntime, shard_id: str, kind: str) -> None:
    """Send a shard's message on its kind's queue, with the kind's time limit."""
    limit = rt.settings.time_limit_for(kind)
    rt.queue.celery.send_task(
        RUN_SHARD_TASK,
        args=[shard_id],
        queue=rt.settings.queue_for(kind),
        soft_time_limit=limit,
        time_limit=limit + 60,
    )


def dispatch(rt: WorkerRuntime, tenant_id: str | None = None) -> list[str]:
    """Send queued shards of running jobs whose message is due, up to each tenant's room under the cap."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.requeue_after_s)
    due = or_(JobShard.enqueued_at.is_(None), JobShard.enqueued_at < cutoff)
    waiting = (JobShard.state == "queued", Job.status == "running", Job.cancel_requested.is_(False))
    sent: list[str] = []
    with rt.session_factory() as session:
        tenants = [tenant_id] if tenant_id else list(
            session.scalars(select(JobShard.tenant_id).join(Job).where(*waiting, due).distinct())
        )  # fmt: skip
        for tenant in tenants:
            busy = session.scalar(
                select(func.count()).where(
                    JobShard.tenant_id == tenant,
                    or_(JobShard.state == "running", (JobShard.state == "queued") & ~due),
                )
            )
            room = rt.settings.tenant_max_running_shards - (busy or 0)
            if room <= 0:
                continue
            rows = session.execute(
                select(JobShard.id, Job.kind)
                .join(Job)
                .where(JobShard.tenant_id == tenant, *waiting, due)
                .order_by(Job.created_at, JobShard.index)
                .limit(room)
            ).all()
            for shard_id, kind in rows:
                stamped = rowcount(
                    session.execute(
                        update(JobShard)
                        .where(JobShard.id == shard_id, JobShard.state == "queued", due)
                        .values(enqueued_at=utcnow())
                    )
                )
                session.commit()
                if stamped == 1:
                    send_shard(rt, shard_id, kind)
                    sent.append(shard_id)
    return sent
