"""Job use cases: submit (idempotently), read, list with a cursor, cancel, report and artifacts."""

import hashlib
import json
import logging
from typing import Any, cast

from sqlalchemy import Connection, Engine, Row, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from app.errors import Conflict, InvalidInput, NotFound
from app.orm import TERMINAL_JOB_STATES, Artifact, Job, JobShard, Tenant, utcnow
from app.schemas.jobs import JobError, JobSpec, JobStatus, JobView, ShardView
from app.schemas.sharding import ShardingParams
from app.services import compatibility
from app.services.context import ServiceContext
from app.services.datasets import dataset_facts
from app.services.eps_units import check_pixel_units
from app.services.kinds import KIND_RULES
from app.services.models import get_model
from app.services.pagination import fetch_page
from app.settings import Settings

# A split job's progress: its shards fill this share, the merge after the last shard the rest.
SHARDS_SHARE = 0.95

log = logging.getLogger("gauntlet.jobs")
# A job as the view reads it: the ORM object, or a row of STATUS_COLUMNS (the same attribute names).
JobRow = Job | Row[Any]


def _request_hash(spec: JobSpec) -> str:
    """A stable hash of a spec, to tell a retried request from a different one."""
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def check_sharding(settings: Settings, sharding: ShardingParams | None) -> dict[str, int] | None:
    """The job's split limits as stored; a shard count over the service's limit is refused (422)."""
    if sharding is None:
        return None
    if sharding.max_shards is not None and sharding.max_shards > settings.max_shards_per_job:
        raise InvalidInput(
            f"max_shards is {sharding.max_shards}; this service allows at most {settings.max_shards_per_job}"
        )
    return sharding.model_dump(exclude_none=True)


def submit_job(ctx: ServiceContext, spec: JobSpec, idempotency_key: str | None = None) -> Job:
    """Check the spec against its model and dataset, commit the job, then enqueue its id."""
    request_hash = _request_hash(spec)
    if idempotency_key is not None:
        existing = ctx.session.scalar(
            select(Job).where(Job.tenant_id == ctx.tenant_id, Job.idempotency_key == idempotency_key)
        )
        if existing is not None:
            if existing.request_hash != request_hash:
                raise Conflict(
                    "this Idempotency-Key was used with a different job spec", code="idempotency_conflict"
                )
            return existing
    model = get_model(ctx, spec.model_id)
    compatibility.check_model_ready(model)
    check_pixel_units(spec.params.model_dump(mode="json"), model.input_range)
    held_out = dataset_facts(ctx, spec.dataset_id)
    compatibility.check_dataset_fits(model, held_out)
    rules = KIND_RULES[spec.kind]
    rules.check(ctx, model, spec, held_out)
    tenant_name = ctx.tenant_name
    if tenant_name is None:
        tenant = ctx.session.get(Tenant, ctx.tenant_id)
        tenant_name = tenant.name if tenant else ""
    cost = rules.estimate_cost(ctx, model, spec, held_out)
    compatibility.check_job_cost(ctx.settings, tenant_name, spec.kind, cost)
    callback = str(spec.callback_url) if spec.callback_url else None
    compatibility.check_callback_url(callback, ctx.settings.remote_host_allowlist)
    sharding = check_sharding(ctx.settings, spec.sharding)
    job = Job(
        tenant_id=ctx.tenant_id,
        kind=spec.kind,
        model_id=model.id,
        dataset_id=spec.dataset_id,
        params=spec.params.model_dump(mode="json"),
        seed=spec.seed,
        callback_url=callback,
        sharding=sharding,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        stage="queued",
        # Stamped before the send, so a submission costs one commit: should the process die between the
        # commit and the send, the reconciler sends the job once requeue_after_s has passed.
        enqueued_at=utcnow(),
    )
    ctx.session.add(job)
    try:
        ctx.session.commit()
    except IntegrityError:
        ctx.session.rollback()
        if idempotency_key is None:
            raise
        return submit_job(ctx, spec, idempotency_key)  # a concurrent request with the same key won
    try:
        ctx.queue.send_job(job.id, job.kind)
    except Exception:
        log.exception("could not enqueue job %s; the reconciler will send it", job.id)
        job.enqueued_at = None  # the reconciler's next pass sends it
        ctx.session.commit()
    return job


def get_job(ctx: ServiceContext, job_id: str) -> Job:
    """A job of this tenant; 404 for anything else."""
    job = ctx.session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == ctx.tenant_id))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(
    ctx: ServiceContext, *, status: str | None, kind: str | None, cursor: str | None, limit: int
) -> tuple[list[Job], str | None]:
    """This tenant's jobs, newest first, filtered, one page at a time."""
    query = select(Job).where(Job.tenant_id == ctx.tenant_id)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    return fetch_page(ctx.session, query, Job, cursor=cursor, limit=limit)


def cancel_job(ctx: ServiceContext, job_id: str) -> Job:
    """Cancel now if queued; ask the worker to stop between batches if running."""
    job = get_job(ctx, job_id)
    if job.status in TERMINAL_JOB_STATES:
        raise Conflict(f"job {job_id} already {job.status}", code="job_finished")
    job.cancel_requested = True
    if job.status == "queued":
        job.status, job.stage, job.finished_at = "cancelled", "cancelled", utcnow()
    ctx.session.commit()
    try:
        ctx.queue.revoke(job.id)
    except Exception:
        log.warning("could not revoke the message of job %s; its state guard will skip it", job.id)
    return job


def get_report(ctx: ServiceContext, job_id: str) -> dict[str, Any]:
    """The JSON report of a succeeded job; 409 until then."""
    job = get_job(ctx, job_id)
    if job.status != "succeeded" or job.report is None:
        raise Conflict(
            f"job {job_id} is {job.status}; the report exists once it has succeeded", code="report_not_ready"
        )
    return job.report


def list_artifacts(
    ctx: ServiceContext, job_id: str, *, cursor: str | None = None, limit: int = 100
) -> tuple[list[Artifact], str | None]:
    """Artifacts of one of this tenant's jobs, oldest first, one page at a time."""
    job = get_job(ctx, job_id)
    query = select(Artifact).where(Artifact.job_id == job.id, Artifact.tenant_id == ctx.tenant_id)
    return fetch_page(ctx.session, query, Artifact, cursor=cursor, limit=limit, newest_first=False)


def get_report_html(ctx: ServiceContext, job_id: str) -> Artifact:
    """The HTML report artifact of a succeeded job; 409 until then."""
    get_report(ctx, job_id)
    artifact = ctx.session.scalar(
        select(Artifact).where(
            Artifact.job_id == job_id, Artifact.tenant_id == ctx.tenant_id, Artifact.kind == "report_html"
        )
    )
    if artifact is None:
        raise NotFound(f"job {job_id} has no HTML report")
    return artifact


def get_artifact(ctx: ServiceContext, artifact_id: str) -> Artifact:
    """An artifact of this tenant; 404 for anything else."""
    artifact = ctx.session.scalar(
        select(Artifact).where(Artifact.id == artifact_id, Artifact.tenant_id == ctx.tenant_id)
    )
    if artifact is None:
        raise NotFound(f"artifact {artifact_id} not found")
    return artifact


# What a status read selects: the job view's columns, never the report (nor the key, hash and callback).
STATUS_COLUMNS = (
    Job.id, Job.kind, Job.status, Job.progress, Job.stage, Job.error_code, Job.error_message, Job.model_id,
    Job.dataset_id, Job.params, Job.seed, Job.attempts, Job.created_at, Job.started_at, Job.finished_at,
    Job.summary,
)  # fmt: skip
# Built once: a status read is hot, and building the statement cost more than running it in the API.
STATUS_QUERY = select(*STATUS_COLUMNS).where(
    Job.id == bindparam("job_id"), Job.tenant_id == bindparam("tenant_id")
)
SHARDS_QUERY = (
    select(
        JobShard.index, JobShard.state, JobShard.worker_id, JobShard.attempts, JobShard.started_at,
        JobShard.finished_at, JobShard.progress,
    )
    .where(JobShard.job_id == bindparam("job_id"))
    .order_by(JobShard.index)
)  # fmt: skip


def job_status(engine: Engine, tenant_id: str, job_id: str) -> JobView:
    """A job's view for a status read: one Core select of STATUS_COLUMNS (no ORM object, no report), and
    the shards' query only for a job a worker has claimed; 404 for anything but this tenant's job.

    On a connection taken from `engine` (the API's autocommit engine) and handed back to the pool here,
    in the caller's thread."""
    with engine.connect() as connection:
        row = connection.execute(STATUS_QUERY, {"job_id": job_id, "tenant_id": tenant_id}).first()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _view(row, connection)


def _shards(connection: Connection | Session | None, job: JobRow) -> tuple[list[ShardView], float | None]:
    """The job's shards (one small indexed query) and, while it runs, progress summed over them."""
    if connection is None or job.attempts == 0:
        return [], None  # shards are written by a worker that claimed the job, which counts an attempt
    rows = connection.execute(SHARDS_QUERY, {"job_id": job.id}).all()
    # Unpacked by position: a Row's `index` attribute is the tuple method, not the column.
    views = [
        ShardView(
            index=index,
            state=cast(JobStatus, state),
            worker=worker,
            attempts=attempts,
            started_at=started,
            finished_at=finished,
        )
        for index, state, worker, attempts, started, finished, _ in rows
    ]
    done = sum(1.0 if row.state == "succeeded" else row.progress for row in rows)
    return views, SHARDS_SHARE * done / len(rows) if rows else None


def job_view(job: Job) -> JobView:
    """The API view of a job."""
    return _view(job, object_session(job))


def _view(job: JobRow, connection: Connection | Session | None) -> JobView:
    """The API view of a job row (an ORM object or a row of STATUS_COLUMNS)."""
    shards, shard_progress = _shards(connection, job)
    progress = job.progress
    if shard_progress is not None and job.status == "running" and job.stage != "merging":
        progress = shard_progress
    error = JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
    return JobView(
        id=job.id,
        kind=job.kind,
        status=cast(JobStatus, job.status),
        progress=progress,
        stage=job.stage,
        error=error,
        model_id=job.model_id,
        dataset_id=job.dataset_id,
        params=job.params,
        seed=job.seed,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        summary=job.summary,
        shards=shards,
    )
