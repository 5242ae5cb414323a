"""Celery tasks: an id in, one service call."""

from app.queue import RUN_JOB_TASK, VALIDATE_MODEL_TASK
from worker.celery_app import celery_app
from worker.runtime import runtime
from worker.services.job_runner import run_job as run_job_service
from worker.services.model_validation import validate_model as validate_model_service


@celery_app.task(name=VALIDATE_MODEL_TASK)
def validate_model(model_id: str) -> None:
    """Validate an uploaded model."""
    validate_model_service(runtime(), model_id)


@celery_app.task(name=RUN_JOB_TASK)
def run_job(job_id: str) -> None:
    """Run a job attempt."""
    run_job_service(runtime(), job_id)
