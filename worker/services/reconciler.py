"""The reconciler: re-send lost messages and recover jobs left `running` by a dead worker.

Postgres is the source of truth and a message only carries an id, so a lost message (a broker that
restarted empty) or a killed worker costs time, never a job: queued rows whose message is older than
`requeue_after_s` are sent again, and running rows whose heartbeat is older than `stale_after_s` go
back to queued (or fail with `worker_lost` after `max_attempts`). Duplicate messages are harmless:
tasks claim a job only from `queued`.
"""

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select, update

from app.orm import Job, ModelRecord, utcnow
from worker.runtime import WorkerRuntime

log = logging.getLogger("gauntlet.reconciler")


@dataclass
class ReconcileResult:
    """What one pass did."""

    recovered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resent_jobs: list[str] = field(default_factory=list)
    resent_models: list[str] = field(default_factory=list)


def _recover_stale_running(rt: WorkerRuntime, result: ReconcileResult) -> None:
    """Put jobs whose worker stopped beating back in the queue, or fail them after max_attempts."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.stale_after_s)
    with rt.session_factory() as session:
        stale = session.execute(
            select(Job.id, Job.attempts).where(Job.status == "running", Job.heartbeat_at < cutoff)
        ).all()
        for job_id, attempts in stale:
            guard = (Job.id == job_id, Job.status == "running", Job.attempts == attempts)
            if attempts >= rt.settings.max_attempts:
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


def _resend_queued(rt: WorkerRuntime, result: ReconcileResult) -> None:
    """Send again the jobs and model validations whose message may have been lost."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.requeue_after_s)
    with rt.session_factory() as session:
        jobs = session.scalars(
            select(Job).where(
                Job.status == "queued",
                Job.cancel_requested.is_(False),
                or_(Job.enqueued_at.is_(None), Job.enqueued_at < cutoff),
            )
        ).all()
        for job in jobs:
            rt.queue.send_job(job.id, job.kind)
            job.enqueued_at = utcnow()
            result.resent_jobs.append(job.id)
        models = session.scalars(
            select(ModelRecord).where(
                ModelRecord.status == "validating",
                or_(ModelRecord.enqueued_at.is_(None), ModelRecord.enqueued_at < cutoff),
            )
        ).all()
        for model in models:
            rt.queue.send_model_validation(model.id)
            model.enqueued_at = utcnow()
            result.resent_models.append(model.id)
        session.commit()


def reconcile_once(rt: WorkerRuntime) -> ReconcileResult:
    """One pass: recover stale running jobs, then re-send what may have been lost."""
    result = ReconcileResult()
    _recover_stale_running(rt, result)
    _resend_queued(rt, result)
    if result.recovered or result.failed or result.resent_jobs or result.resent_models:
        log.info("reconciler: %s", result)
    return result


def start_reconciler(rt: WorkerRuntime) -> threading.Event:
    """Run reconcile_once now and every reconcile_interval_s in a daemon thread; set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                reconcile_once(rt)
            except Exception:
                log.exception("reconciler pass failed; retrying next interval")
            if stop.wait(rt.settings.reconcile_interval_s):
                return

    threading.Thread(target=loop, name="gauntlet-reconciler", daemon=True).start()
    return stop
