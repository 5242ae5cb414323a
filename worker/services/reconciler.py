"""The reconciler: re-send lost messages, recover jobs left `running` by a dead worker, and housekeeping.

Postgres is the source of truth and a message only carries an id, so a lost message (a broker that
restarted empty) or a killed worker costs time, never a job: queued rows whose message is older than
`requeue_after_s` are sent again, and running rows whose heartbeat is older than `stale_after_s` go
back to queued (or fail with `worker_lost` after `max_attempts`). A job whose cancellation was asked
for never goes back to the queue: it ends `cancelled`. A validation is re-sent only while no worker
beats its heartbeat, and after `max_attempts` interrupted attempts the model is `invalid`. Each
stamp of `enqueued_at` is conditional, so several reconcilers never send the same row twice. Each pass
also records this worker's heartbeat, delivers due webhooks and deletes unreferenced blobs.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import timedelta

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from app.orm import Job, JobShard, ModelRecord, WorkerHeartbeat, utcnow
from worker.runtime import WorkerRuntime
from worker.services.blob_collection import collect_blobs
from worker.services.job_state import worker_identity
from worker.services.shards.recovery import recover_shards
from worker.services.validation_state import interrupted_values
from worker.services.webhook_delivery import deliver_due

log = logging.getLogger("gauntlet.reconciler")


@dataclass
class ReconcileResult:
    """What one pass did."""

    recovered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resent_jobs: list[str] = field(default_factory=list)
    resent_models: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    interrupted_models: list[str] = field(default_factory=list)
    deliveries: list[str] = field(default_factory=list)
    collected_blobs: list[str] = field(default_factory=list)


def _recover_stale_running(rt: WorkerRuntime, result: ReconcileResult) -> None:
    """Put jobs whose worker stopped beating back in the queue (cancelled ones end), or fail them."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.stale_after_s)
    with rt.session_factory() as session:
        stale = session.execute(
            select(Job.id, Job.attempts, Job.cancel_requested).where(
                Job.status == "running",
                Job.heartbeat_at < cutoff,
                ~exists().where(JobShard.job_id == Job.id),  # split jobs: recover_shards
            )
        ).all()
        for job_id, attempts, cancel_requested in stale:
            guard = (Job.id == job_id, Job.status == "running", Job.attempts == attempts)
            if cancel_requested:
                values: dict = {"status": "cancelled", "stage": "cancelled", "finished_at": utcnow()}
                target = result.cancelled
            elif attempts >= rt.settings.max_attempts:
                values = {
                    "status": "failed",
                    "error_code": "worker_lost",
                    "finished_at": utcnow(),
                    "stage": "failed",
                    "error_message": f"the worker running this job stopped {attempts} times",
                }
                target = result.failed
            else:
                values = {
                    "status": "queued",
                    "stage": "requeued after its worker stopped",
                    "enqueued_at": None,
                }
                target = result.recovered
            if session.execute(update(Job).where(*guard).values(**values)).rowcount == 1:
                target.append(job_id)
        session.commit()


def _claim_send(session: Session, table: type, row_id: str, *conditions: object) -> bool:
    """Stamp enqueued_at only if the row still qualifies, so two reconcilers never send the same row."""
    stamped = session.execute(
        update(table).where(table.id == row_id, *conditions).values(enqueued_at=utcnow())
    ).rowcount
    session.commit()
    return stamped == 1


def _resend_queued_jobs(rt: WorkerRuntime, result: ReconcileResult) -> None:
    """Send again queued jobs whose message may have been lost; a cancelled one ends instead."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.requeue_after_s)
    lost = or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff)
    with rt.session_factory() as session:
        cancelled = session.execute(
            update(Job)
            .where(Job.status == "queued", Job.cancel_requested.is_(True))
            .values(status="cancelled", stage="cancelled", finished_at=utcnow())
            .returning(Job.id)
        ).scalars()
        result.cancelled.extend(cancelled)
        session.commit()
        jobs = session.execute(
            select(Job.id, Job.kind).where(Job.status == "queued", Job.cancel_requested.is_(False), lost)
        ).all()
        for job_id, kind in jobs:
            if _claim_send(
                session, Job, job_id, Job.status == "queued", Job.cancel_requested.is_(False), lost
            ):
                rt.queue.send_job(job_id, kind)
                result.resent_jobs.append(job_id)


def _resend_validations(rt: WorkerRuntime, result: ReconcileResult) -> None:
    """Send again validations whose message may be lost and that no worker is running (no fresh beat)."""
    requeue = utcnow() - timedelta(seconds=rt.settings.requeue_after_s)
    stale = utcnow() - timedelta(seconds=rt.settings.stale_after_s)
    conditions = (
        ModelRecord.status == "validating",
        or_(ModelRecord.enqueued_at.is_(None), ModelRecord.enqueued_at < requeue),
        or_(ModelRecord.validation_heartbeat_at.is_(None), ModelRecord.validation_heartbeat_at < stale),
    )
    with rt.session_factory() as session:
        models = session.execute(
            select(ModelRecord.id, ModelRecord.validation_attempts).where(*conditions)
        ).all()
        for model_id, attempts in models:
            if attempts >= rt.settings.max_attempts:
                given_up = session.execute(
                    update(ModelRecord)
                    .where(
                        ModelRecord.id == model_id, ModelRecord.validation_attempts == attempts, *conditions
                    )
                    .values(**interrupted_values(attempts))
                ).rowcount
                session.commit()
                if given_up:
                    result.interrupted_models.append(model_id)
            elif _claim_send(session, ModelRecord, model_id, *conditions):
                rt.queue.send_model_validation(model_id)
                result.resent_models.append(model_id)


def _beat_worker(rt: WorkerRuntime, queues: str) -> None:
    """Record that this worker process is alive (for /metrics)."""
    with rt.session_factory() as session:
        row = session.get(WorkerHeartbeat, worker_identity())
        if row is None:
            session.add(WorkerHeartbeat(worker_id=worker_identity(), queues=queues[:200]))
        else:
            row.last_seen_at, row.queues = utcnow(), queues[:200]
        session.commit()


def reconcile_once(rt: WorkerRuntime, queues: str = "") -> ReconcileResult:
    """One pass: recover stale jobs, re-send what may be lost, deliver webhooks, collect blobs."""
    result = ReconcileResult()
    steps: list[tuple[str, Callable[[], None]]] = [
        ("heartbeat", lambda: _beat_worker(rt, queues)),
        ("recovery", lambda: _recover_stale_running(rt, result)),
        ("jobs", lambda: _resend_queued_jobs(rt, result)),
        ("shards", lambda: result.shards.extend(recover_shards(rt))),
        ("validations", lambda: _resend_validations(rt, result)),
        ("webhooks", lambda: result.deliveries.extend(deliver_due(rt))),
        ("blobs", lambda: result.collected_blobs.extend(collect_blobs(rt))),
    ]
    for name, step in steps:
        try:
            step()
        except Exception:
            log.exception("reconciler step %s failed; retrying next pass", name)
    if any(getattr(result, f.name) for f in fields(result)):
        log.info("reconciler: %s", result)
    return result


def start_reconciler(rt: WorkerRuntime, queues: str = "") -> threading.Event:
    """Run reconcile_once now and every reconcile_interval_s in a daemon thread; set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                reconcile_once(rt, queues)
            except Exception:
                log.exception("reconciler pass failed; retrying next interval")
            if stop.wait(rt.settings.reconcile_interval_s):
                return

    threading.Thread(target=loop, name="gauntlet-reconciler", daemon=True).start()
    return stop
