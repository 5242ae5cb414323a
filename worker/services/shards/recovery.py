"""The reconciler's part for split jobs: re-run lost shards, end cancelled jobs, re-send a lost merge.

A running shard whose heartbeat is older than `stale_after_s` goes back to queued (finished shards are
kept), or fails the job with `worker_lost` after `max_attempts`; queued shards whose message may be
lost are sent again within the tenant's cap; a job whose shards all succeeded but whose merge is not
running (its worker died, or the message was lost) gets a shard message again, whose worker merges;
a merge sent that way is sent again only after `requeue_after_s` without a worker taking it.
"""

from datetime import timedelta

from sqlalchemy import and_, exists, or_, select, update

from app.orm import Job, JobShard, utcnow
from app.storage import rowcount
from worker.runtime import WorkerRuntime
from worker.services.shards.state import MERGE_PENDING, MERGING, dispatch, send_shard


def recover_shards(rt: WorkerRuntime) -> list[str]:
    """One pass over split jobs; the ids of the shards re-queued or re-sent."""
    done: list[str] = []
    stale = utcnow() - timedelta(seconds=rt.settings.stale_after_s)
    with rt.session_factory() as session:
        rows = session.execute(
            select(JobShard.id, JobShard.job_id, JobShard.attempts, Job.status, Job.cancel_requested)
            .join(Job)
            .where(JobShard.state == "running", JobShard.heartbeat_at < stale)
        ).all()
        for shard_id, job_id, attempts, status, cancel_requested in rows:
            guard = (JobShard.id == shard_id, JobShard.state == "running", JobShard.attempts == attempts)
            if status != "running" or cancel_requested:
                values: dict[str, object] = {"state": "cancelled", "finished_at": utcnow()}
            elif attempts >= rt.settings.max_attempts:
                values = {"state": "failed", "error_code": "worker_lost", "finished_at": utcnow()}
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "running")
                    .values(
                        status="failed",
                        stage="failed",
                        error_code="worker_lost",
                        finished_at=utcnow(),
                        error_message=f"the workers running a shard of this job stopped {attempts} times",
                    )  # fmt: skip
                )
            else:
                values = {"state": "queued", "enqueued_at": None, "worker_id": None}
            if rowcount(session.execute(update(JobShard).where(*guard).values(**values))) == 1:
                done.append(shard_id)
        # Cancelled jobs whose shards have all stopped end; their queued shards never run.
        split = exists().where(JobShard.job_id == Job.id)
        running = exists().where(JobShard.job_id == Job.id, JobShard.state == "running")
        cancelled = list(
            session.scalars(
                update(Job)
                .where(Job.status == "running", Job.cancel_requested.is_(True), split, ~running)
                .values(status="cancelled", stage="cancelled", finished_at=utcnow())
                .returning(Job.id)
            )
        )
        if cancelled:
            session.execute(
                update(JobShard)
                .where(JobShard.job_id.in_(cancelled), JobShard.state == "queued")
                .values(state="cancelled", finished_at=utcnow())
            )
        session.commit()
        # Every shard succeeded, but no merge runs (never started, or its worker stopped beating).
        unfinished = exists().where(JobShard.job_id == Job.id, JobShard.state != "succeeded")
        resend = utcnow() - timedelta(seconds=rt.settings.requeue_after_s)
        recent = exists().where(JobShard.job_id == Job.id, JobShard.finished_at >= resend)
        # A merge that runs beats the job's heartbeat; one sent and not yet taken waits requeue_after_s.
        lost_merge = or_(
            Job.stage.is_(None),
            Job.stage.not_in((MERGING, MERGE_PENDING)),
            and_(Job.stage == MERGING, Job.heartbeat_at < stale),
            and_(Job.stage == MERGE_PENDING, Job.heartbeat_at < resend),
        )
        waiting = session.execute(
            select(Job.id, Job.kind)
            .where(Job.status == "running", Job.cancel_requested.is_(False), split, ~unfinished, ~recent)
            .where(lost_merge)
        ).all()
        for job_id, kind in waiting:
            reset = rowcount(
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "running", lost_merge)
                    .values(stage=MERGE_PENDING, heartbeat_at=utcnow())
                )
            )
            session.commit()
            first = session.scalar(select(JobShard.id).where(JobShard.job_id == job_id).limit(1))
            if reset == 1 and first is not None:
                send_shard(rt, first, kind)
                done.append(first)
    return done + dispatch(rt)
