"""The worker's Celery app: the shared configuration plus the reconciler on start-up."""

import logging

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from app.queue import make_celery
from app.settings import get_settings

celery_app = make_celery(get_settings())
celery_app.conf.include = ["worker.tasks"]
log = logging.getLogger("gauntlet.worker")
_reconciler_stop: list = []


@worker_process_init.connect
def _limit_job_memory(**_kwargs: object) -> None:
    """Each pool process that runs jobs gets the kernel-enforced memory cap of the settings."""
    from worker.services.job_limits import apply_job_memory_limit

    apply_job_memory_limit(get_settings().job_memory_limit_bytes)


@worker_ready.connect
def _start_reconciler(**_kwargs: object) -> None:
    """Start the reconciler thread in the worker's main process."""
    from worker.runtime import runtime
    from worker.services.reconciler import start_reconciler

    queues = ",".join(sorted(celery_app.amqp.queues.consume_from or celery_app.amqp.queues))
    _reconciler_stop.append(start_reconciler(runtime(), queues))
    log.info("reconciler started")


@worker_shutdown.connect
def _stop_reconciler(**_kwargs: object) -> None:
    """Stop the reconciler thread."""
    for stop in _reconciler_stop:
        stop.set()
