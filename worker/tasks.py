"""Celery tasks: an id in, one service call."""

from app.queue import RUN_JOB_TASK, VALIDATE_MODEL_TASK
from worker.celery_app import celery_app
from worker.runtime import runtime
from worker.services.job_runner import merge_job
from worker.services.job_runner import run_job as run_job_service
from worker.services.model_validation import validate_model as validate_model_service
from worker.services.shards.runner import run_shard as run_shard_service
from worker.services.shards.state import RUN_SHARD_TASK


@celery_app.task(name=VALIDATE_MODEL_TASK)
def validate_model(model_id: str) -> None:
    """Validate an uploaded model."""
    validate_model_service(runtime(), model_id)


@celery_app.task(name=RUN_JOB_TASK)
def run_job(job_id: str) -> None:
    """Run a job attempt."""
    run_job_service(runtime(), job_id)


@celery_app.task(name=RUN_SHARD_TASK)
def run_shard(shard_id: str) -> None:
    """Run one shard of a split job (and merge the job if it was the last)."""
    run_shard_service(runtime(), shard_id, merge_job)
