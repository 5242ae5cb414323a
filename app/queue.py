"""The Celery application's configuration and the two messages the API sends.

Both the API (to enqueue) and the worker (to consume) build the app here, so they agree on queues,
serialisation and routing. Messages carry only ids; the database is the source of truth.
"""

from typing import Any

from celery import Celery

from app.settings import Settings

VALIDATE_MODEL_TASK = "gauntlet.validate_model"
RUN_JOB_TASK = "gauntlet.run_job"
CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
ALL_QUEUES = (CPU_QUEUE, GPU_QUEUE)


def make_celery(settings: Settings) -> Celery:
    """A Celery app: JSON only, late acks, prefetch 1, and the cpu and gpu queues."""
    celery = Celery("gauntlet", broker=settings.resolved_broker_url)
    transport_options: dict[str, Any] = {"visibility_timeout": max(3600, settings.longest_time_limit_s + 600)}
    if settings.resolved_broker_url.startswith("filesystem"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        transport_options |= {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "control_folder": str(folder / "control"),
        }
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=GPU_QUEUE,
        task_routes={VALIDATE_MODEL_TASK: {"queue": CPU_QUEUE}, RUN_JOB_TASK: {"queue": GPU_QUEUE}},
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    return celery


class JobQueue:
    """Sends job and validation messages; the only way the API talks to workers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.celery = make_celery(settings)

    def send_job(self, job_id: str, kind: str) -> None:
        """Enqueue a job run (after its row is committed) on its kind's queue, with its kind's time limit."""
        limit = self.settings.time_limit_for(kind)
        self.celery.send_task(
            RUN_JOB_TASK,
            args=[job_id],
            task_id=job_id,
            queue=self.settings.queue_for(kind),
            soft_time_limit=limit,
            time_limit=limit + 60,
        )

    def send_model_validation(self, model_id: str) -> None:
        """Enqueue the validation of an uploaded model (after its row is committed)."""
        self.celery.send_task(
            VALIDATE_MODEL_TASK,
            args=[model_id],
            task_id=model_id,
            queue=CPU_QUEUE,
            soft_time_limit=self.settings.validation_time_limit_s,
            time_limit=self.settings.validation_time_limit_s + 30,
        )

    def revoke(self, job_id: str) -> None:
        """Best-effort revoke of a job's pending messages; the state guard is what matters."""
        self.celery.control.revoke(job_id)

    def ping_broker(self, timeout: float = 2.0) -> None:
        """Raise if the broker cannot be reached."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
