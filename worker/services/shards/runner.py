"""Split a claimed job into shards, run one shard, and merge when the last one is in.

The worker that claimed a job plans it; if the plan has more than one piece it writes the shards and
sends them (within the tenant's cap) and the job stays `running` while shards run anywhere. Each shard
stores its partial result in Postgres under its ownership guard; the worker whose shard completes the
set takes the merge (one conditional update) and stores report, artifacts and derived models in one
transaction, as an unsplit job does. A shard failing for a reason that is not the machine's fails the
job with its code; cancellation stops every shard through the progress callback.

A kind with a prepare step (defense: the trained model) runs it once, in the splitting worker, before
the shards are written: its bytes are a blob, the result of shard 0 (written already succeeded, so it is
kept like any finished shard and never collected while the job's shards exist), and every piece after
it carries the blob's digest; a shard reads those bytes within its job and tenant.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.orm import Blob, Job, JobShard, utcnow
from app.services.jobs import SHARDS_SHARE
from app.storage import put_blob, rowcount
from worker.runtime import WorkerRuntime
from worker.services.context import JobData, RunEnv
from worker.services.inputs import LoadedJob, load_job
from worker.services.job_state import Claim, JobCancelled, JobFailure, JobLost, worker_identity
from worker.services.shards.failures import failure_values
from worker.services.shards.heartbeat import shard_heartbeat
from worker.services.shards.kinds import PREPARED, SHARDED
from worker.services.shards.state import (
    MERGING,
    ShardClaim,
    ShardLost,
    claim_shard,
    dispatch,
    finish_shard,
    record_shard_progress,
)
from worker.services.targets import Target

log = logging.getLogger("gauntlet.shards")
PREPARED_SHA256 = "prepared_sha256"  # a piece's plan: the digest of its job's prepared bytes (shard 0's)


@dataclass(frozen=True)
class Prepared:
    """What a kind's prepare step returned, and when it started (shard 0's start)."""

    data: bytes
    started: datetime


def split_job(rt: WorkerRuntime, claim: Claim, job: LoadedJob) -> bool:
    """Plan the claimed job; with more than one piece write and send its shards and return True.

    A kind with a prepare step runs it here, once (not again when an earlier attempt wrote the shards).
    """
    kind = SHARDED.get(type(job.spec))
    if kind is None:
        return False
    with rt.session_factory() as session:
        row = session.get(Job, claim.job_id)
        sharding = dict((row.sharding if row is not None else None) or {})
        written = bool(session.scalar(select(exists().where(JobShard.job_id == claim.job_id))))
    pieces = kind.plan(job.spec, job.data, rt.settings, sharding)
    if len(pieces) <= 1:
        return False
    prepared = _prepare(kind.prepare, job, len(pieces)) if kind.prepare is not None and not written else None
    count = len(pieces) + (1 if kind.prepare is not None else 0)
    with rt.session_factory() as session:
        owned = rowcount(
            session.execute(
                update(Job)
                .where(Job.id == claim.job_id, Job.status == "running", Job.attempts == claim.attempt)
                .values(stage=f"split into {count} shards", heartbeat_at=utcnow())
            )
        )
        if owned != 1:
            raise JobLost(claim.job_id)
        tenant_id = session.scalar(select(Job.tenant_id).where(Job.id == claim.job_id))
        assert tenant_id is not None
        if not session.scalar(select(exists().where(JobShard.job_id == claim.job_id))):
            if kind.prepare is not None and prepared is None:
                raise JobLost(claim.job_id)  # shards seen earlier are gone: the job is no longer this one's
            _write_shards(rt, session, claim.job_id, tenant_id, pieces, prepared)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # written by an earlier attempt: finished shards are kept
    log.info("job %s: split into %d shards", claim.job_id, count)
    dispatch(rt, tenant_id)
    return True


def _prepare(
    prepare: Callable[[Any, Target, JobData, RunEnv], bytes], job: LoadedJob, pieces: int
) -> Prepared:
    """Run the kind's prepare step; its progress fills the share shard 0 will hold of the job's."""
    share, progress = SHARDS_SHARE / (pieces + 1), job.env.progress
    env = replace(job.env, progress=lambda fraction, stage: progress(share * fraction, stage))
    started = utcnow()
    return Prepared(prepare(job.spec, job.target, job.data, env), started)


def _write_shards(
    rt: WorkerRuntime,
    session: Session,
    job_id: str,
    tenant_id: str,
    pieces: list[dict[str, Any]],
    prepared: Prepared | None,
) -> None:
    """Add the job's shards: the prepared bytes as shard 0, already succeeded, when there are any."""
    first, extra = 0, {}
    if prepared is not None:
        digest = put_blob(session, prepared.data, max_bytes=rt.settings.max_artifact_bytes)
        now = utcnow()
        session.add(
            JobShard(
                job_id=job_id,
                tenant_id=tenant_id,
                index=0,
                plan={"prepare": True},
                state="succeeded",
                attempts=1,
                worker_id=worker_identity(),
                started_at=prepared.started,
                heartbeat_at=now,
                finished_at=now,
                progress=1.0,
                result_sha256=digest,
            )
        )
        first, extra = 1, {PREPARED_SHA256: digest}
    for index, piece in enumerate(pieces, start=first):
        session.add(JobShard(job_id=job_id, tenant_id=tenant_id, index=index, plan={**piece, **extra}))


class ShardProgress:
    """A shard's progress callback: writes at a bounded rate and stops the shard when its job stopped."""

    def __init__(self, rt: WorkerRuntime, claim: ShardClaim) -> None:
        self.rt, self.claim, self._last = rt, claim, 0.0

    def __call__(self, fraction: float, stage: str) -> None:
        """Record progress; raise JobCancelled when the job was cancelled, failed or lost."""
        now = time.monotonic()
        if now - self._last < self.rt.settings.progress_interval_s and fraction < 1.0:
            return
        self._last = now
        try:
            with self.rt.session_factory() as session:
                record_shard_progress(session, self.claim, fraction)
        except ShardLost as lost:
            raise JobCancelled(self.claim.job_id) from lost


def _run_piece(rt: WorkerRuntime, claim: ShardClaim) -> bytes:
    """Load the job's inputs and run this shard's piece."""
    with shard_heartbeat(rt, claim):
        job = load_job(rt, claim.job_id, ShardProgress(rt, claim))
        try:
            kind = SHARDED[type(job.spec)]
            piece = claim.plan
            if kind.prepare is not None:
                piece = {**piece, PREPARED: _prepared_of(rt, claim)}
            return kind.run_piece(job.spec, job.target, job.data, job.env, piece)
        finally:
            job.target.close()


def _prepared_of(rt: WorkerRuntime, claim: ShardClaim) -> bytes:
    """The bytes the job's prepare step stored (shard 0's result), read within the job and its tenant."""
    with rt.session_factory() as session:
        data = session.scalar(
            select(Blob.data)
            .join(JobShard, JobShard.result_sha256 == Blob.sha256)
            .where(
                JobShard.job_id == claim.job_id, JobShard.tenant_id == claim.tenant_id, JobShard.index == 0
            )
            .where(JobShard.state == "succeeded", Blob.sha256 == claim.plan.get(PREPARED_SHA256))
        )
    if data is None:
        raise JobFailure("internal", f"shard {claim.index}: the job's prepared result is missing")
    return data


def _store_piece(rt: WorkerRuntime, claim: ShardClaim, payload: bytes) -> bool:
    """Store the shard's partial result with its success, under the ownership guard."""
    with rt.session_factory() as session:
        digest = put_blob(session, payload, max_bytes=rt.settings.max_artifact_bytes)
        if not finish_shard(session, claim, "succeeded", result_sha256=digest, progress=1.0):
            session.rollback()
            return False
        session.commit()
    return True


def _stop_job(rt: WorkerRuntime, job_id: str, status: str, **values: Any) -> None:
    """End a running split job (failed, or cancelled once no shard runs) and drop its queued shards."""
    with rt.session_factory() as session:
        session.execute(
            update(JobShard)
            .where(JobShard.job_id == job_id, JobShard.state == "queued")
            .values(state="cancelled", finished_at=utcnow())
        )
        if status == "cancelled" and session.scalar(
            select(exists().where(JobShard.job_id == job_id, JobShard.state == "running"))
        ):
            session.commit()
            return
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(status=status, stage=status, finished_at=utcnow(), **values)
        )
        session.commit()


def run_shard(rt: WorkerRuntime, shard_id: str, merge: Callable[[WorkerRuntime, str], None]) -> None:
    """Run a queued shard; if it (or an earlier run) completed the job's set, try the merge."""
    with rt.session_factory() as session:
        claim = claim_shard(session, shard_id, rt.settings.tenant_max_running_shards)
        shard = session.get(JobShard, shard_id)
        job_id = shard.job_id if shard is not None else None
        done = shard is not None and shard.state == "succeeded"
    if claim is None:
        if job_id is not None and done:
            merge(rt, job_id)  # a re-sent message after a merge was lost
        return
    log.info("shard %s (job %s #%d): attempt %d started", shard_id, claim.job_id, claim.index, claim.attempt)
    try:
        payload = _run_piece(rt, claim)
        stored = _store_piece(rt, claim, payload)
    except JobCancelled:
        with rt.session_factory() as session:
            finish_shard(session, claim, "cancelled")
            session.commit()
            job = session.get(Job, claim.job_id)
            cancelled = job is not None and job.cancel_requested
        if cancelled:
            _stop_job(rt, claim.job_id, "cancelled")
        return
    except Exception as error:  # noqa: BLE001 - every failure gets a stable code, the job fails with it
        values = failure_values(error, f"shard {claim.index}")
        with rt.session_factory() as session:
            owned = finish_shard(session, claim, "failed", **values)
            session.commit()
        if owned:
            _stop_job(rt, claim.job_id, "failed", **values)
        return
    finally:
        dispatch(rt, claim.tenant_id)
    if stored:
        log.info("shard %s (job %s #%d): succeeded", shard_id, claim.job_id, claim.index)
        merge(rt, claim.job_id)


def take_merge(rt: WorkerRuntime, job_id: str) -> Claim | None:
    """The job's claim if every shard succeeded and this worker won the merge; None otherwise."""
    unfinished = exists().where(JobShard.job_id == job_id, JobShard.state != "succeeded")
    with rt.session_factory() as session:
        won = rowcount(
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.stage != MERGING, ~unfinished)
                .where(Job.cancel_requested.is_(False))
                .values(stage=MERGING, progress=SHARDS_SHARE, heartbeat_at=utcnow())
            )
        )
        session.commit()
        attempts = session.scalar(select(Job.attempts).where(Job.id == job_id))
    return Claim(job_id, int(attempts)) if won == 1 and attempts is not None else None


def pieces_of(rt: WorkerRuntime, job_id: str) -> list[bytes]:
    """The partial results of the job's shards, in shard order (a prepare step's bytes first, shard 0)."""
    with rt.session_factory() as session:
        return list(
            session.scalars(
                select(Blob.data)
                .join(JobShard, JobShard.result_sha256 == Blob.sha256)
                .where(JobShard.job_id == job_id)
                .order_by(JobShard.index)
            )
        )
