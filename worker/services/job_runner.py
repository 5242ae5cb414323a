"""Run one job attempt: claim it, execute its kind, store report and artifacts, finish it."""

import logging
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.orm import Session

from app.orm import Artifact, Job, ModelRecord, utcnow
from app.services.jobs import SHARDS_SHARE
from app.storage import put_blob
from worker.engine.errors import EngineError
from worker.runtime import WorkerRuntime
from worker.services.callbacks import send_callback
from worker.services.inputs import load_job
from worker.services.job_limits import is_out_of_memory
from worker.services.job_state import Claim, JobCancelled, JobFailure, JobLost, claim_job, finish
from worker.services.kinds import run_kind
from worker.services.outputs import DerivedModel, JobOutput, finish_output
from worker.services.progress import Heartbeat, ProgressReporter
from worker.services.shards.kinds import SHARDED
from worker.services.shards.runner import pieces_of, split_job, take_merge
from worker.services.shards.state import MERGING

log = logging.getLogger("gauntlet.jobs")


def run_job(rt: WorkerRuntime, job_id: str) -> None:
    """Run the job if it is queued; anything else (already done, running elsewhere, cancelled) is a no-op."""
    with rt.session_factory() as session:
        claim = claim_job(session, job_id)
    if claim is None:
        log.info("job %s is not queued; nothing to do", job_id)
        return
    log.info("job %s: attempt %d started", job_id, claim.attempt)
    _attempt(rt, claim, lambda reporter: _execute(rt, claim, reporter))


def merge_job(rt: WorkerRuntime, job_id: str) -> None:
    """Merge a split job whose shards all succeeded, if this worker wins the merge; else a no-op."""
    claim = take_merge(rt, job_id)
    if claim is None:
        return
    log.info("job %s: merging its shards", job_id)
    _attempt(rt, claim, lambda reporter: _merge(rt, claim, reporter))


def _attempt(rt: WorkerRuntime, claim: Claim, work: Callable[[ProgressReporter], JobOutput | None]) -> None:
    """Do the attempt's work and store its output, or end the job with a stable error code."""
    job_id = claim.job_id
    reporter = ProgressReporter(rt.session_factory, claim, rt.settings.progress_interval_s)
    try:
        with Heartbeat(rt.session_factory, claim, rt.settings.heartbeat_interval_s):
            output = work(reporter)
        if output is None:
            return  # split into shards: the worker of the last one merges and stores
        _store_success(rt, claim, output)
    except JobCancelled:
        _store_end(rt, claim, "cancelled", stage="cancelled")
    except JobLost:
        log.warning("job %s: attempt %d lost ownership; stopping quietly", job_id, claim.attempt)
    except (JobFailure, EngineError) as failure:
        _store_end(
            rt, claim, "failed", error_code=failure.code, error_message=failure.message, stage="failed"
        )
    except ValueError as error:
        log.warning("job %s: the engine refused its input: %s", job_id, error)
        _store_end(rt, claim, "failed", error_code="invalid_input", error_message=str(error), stage="failed")
    except SoftTimeLimitExceeded:
        _store_end(
            rt,
            claim,
            "failed",
            error_code="time_limit",
            stage="failed",
            error_message="the job ran past its time limit; lower max_samples, steps or restarts",
        )
    except Exception as error:
        if not is_out_of_memory(error):
            log.exception("job %s: unexpected error", job_id)
            _store_end(
                rt,
                claim,
                "failed",
                error_code="internal",
                stage="failed",
                error_message="the job failed with an unexpected error; it has been logged",
            )
            return
        log.warning("job %s: attempt %d ran out of memory", job_id, claim.attempt)
        _store_end(
            rt,
            claim,
            "failed",
            error_code="resource_limit",
            stage="failed",
            error_message="the job ran out of memory; lower max_samples, batch_size or the model's size",
        )


def _execute(rt: WorkerRuntime, claim: Claim, reporter: ProgressReporter) -> JobOutput | None:
    """Load the job's inputs, then split it into shards (None) or run its kind and wrap the outcome."""
    job = load_job(rt, claim.job_id, reporter)
    try:
        if split_job(rt, claim, job):
            return None
        outcome = run_kind(job.spec, job.target, job.data, job.env)
    finally:
        job.target.close()
    return finish_output(job.spec, job.env, outcome, model_name=job.target.name)


def _merge(rt: WorkerRuntime, claim: Claim, reporter: ProgressReporter) -> JobOutput:
    """Load the job's inputs and merge its shards' partial results into the job's output."""

    def merging(fraction: float, stage: str) -> None:
        """The merge's progress: what the shards leave, under the stage that tells the reconciler it runs."""
        reporter(SHARDS_SHARE + (1 - SHARDS_SHARE) * fraction, MERGING)

    job = load_job(rt, claim.job_id, merging)
    try:
        outcome = SHARDED[type(job.spec)].merge(
            job.spec, job.target, job.data, job.env, pieces_of(rt, claim.job_id)
        )
    finally:
        job.target.close()
    return finish_output(job.spec, job.env, outcome, model_name=job.target.name)


def _register_derived(session: Session, job: Job, model: DerivedModel, digest: str) -> ModelRecord:
    """A derived model as a ready model of the job's tenant, with its lineage."""
    record = ModelRecord(
        id=model.id,
        tenant_id=job.tenant_id,
        name=model.name,
        format="onnx",
        blob_sha256=digest,
        input_shape=list(model.input_shape),
        num_classes=model.num_classes,
        input_range=list(model.input_range),
        normalization=model.normalization,
        preprocessing=model.preprocessing,
        status="ready",
        white_box=model.white_box,
        intake=model.intake,
        size_bytes=len(model.onnx),
        source_job_id=job.id,
        derived_from=model.derived_from,
        validated_at=utcnow(),
    )
    session.add(record)
    return record


def _store_success(rt: WorkerRuntime, claim: Claim, output: JobOutput) -> None:
    """Store artifacts, report and summary in the same transaction that marks the job succeeded."""
    with rt.session_factory() as session:
        job = session.get(Job, claim.job_id)
        if job is None:
            return
        for payload in output.artifacts:
            digest = put_blob(session, payload.data, max_bytes=rt.settings.max_artifact_bytes)
            session.add(
                Artifact(
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    kind=payload.kind,
                    name=payload.name,
                    media_type=payload.media_type,
                    blob_sha256=digest,
                    size_bytes=len(payload.data),
                )
            )
        for derived in output.derived_models:
            digest = put_blob(session, derived.onnx, max_bytes=rt.settings.max_artifact_bytes)
            _register_derived(session, job, derived, digest)
        if not finish(
            session,
            claim,
            "succeeded",
            report=output.report,
            summary=output.summary,
            progress=1.0,
            stage="done",
        ):
            session.rollback()
            log.warning("job %s: attempt %d finished but no longer owns the job", claim.job_id, claim.attempt)
            return
        session.commit()
        callback = job.callback_url
    log.info("job %s: succeeded", claim.job_id)
    if callback:
        send_callback(callback, {"id": claim.job_id, "status": "succeeded", "summary": output.summary})


def _store_end(rt: WorkerRuntime, claim: Claim, status: str, **values: object) -> None:
    """Mark the attempt's job cancelled or failed."""
    with rt.session_factory() as session:
        owned = finish(session, claim, status, **values)
        session.commit()
        job = session.get(Job, claim.job_id)
        callback = job.callback_url if job is not None and owned else None
    log.info("job %s: %s (%s)", claim.job_id, status, values.get("error_code"))
    if callback:
        send_callback(
            callback, {"id": claim.job_id, "status": status, "error_code": values.get("error_code")}
        )
