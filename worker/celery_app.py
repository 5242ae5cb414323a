"""The worker's Celery app: the shared configuration, pool processes' threads and devices, the reconciler."""

import logging
import os
import sys

# Idle OpenMP threads sleep instead of spinning: read once, when torch's OpenMP runtime loads, so it is
# set here, before the worker imports its tasks (and torch) and forks its pool. An operator's value wins.
_TORCH_LOADED_FIRST = "torch" in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown  # noqa: E402

from app.plugins import load_plugins  # noqa: E402
from app.queue import make_celery  # noqa: E402
from app.settings import get_settings  # noqa: E402

load_plugins(get_settings())  # attacks defined outside the package register before any job is read
celery_app = make_celery(get_settings())
celery_app.conf.include = ["worker.tasks"]
log = logging.getLogger("gauntlet.worker")
_reconciler_stop: list = []


@worker_init.connect
def _record_pool_size(sender: object = None, **_kwargs: object) -> None:
    """Before the pool starts: write its size where every pool process reads it (the environment)."""
    from worker.runtime import POOL_PROCESSES_ENV

    concurrency = getattr(sender, "concurrency", None)
    solo = "solo" in str(getattr(sender, "pool_cls", "")).lower()
    processes = 1 if solo or not isinstance(concurrency, int) else max(1, concurrency)
    os.environ[POOL_PROCESSES_ENV] = str(processes)
    if _TORCH_LOADED_FIRST:
        log.warning("torch was loaded before the worker set OMP_WAIT_POLICY: idle threads may spin")


@worker_process_init.connect
def _set_up_pool_process(**_kwargs: object) -> None:
    """Each pool process: its device and share of the cores, then the kernel-enforced memory cap."""
    from billiard.process import current_process

    from worker.runtime import POOL_PROCESSES_ENV, configure_pool_process
    from worker.services.job_limits import apply_job_memory_limit

    settings = get_settings()
    index = int(getattr(current_process(), "index", 0) or 0)
    processes = int(os.environ.get(POOL_PROCESSES_ENV, "1"))
    log.info("%s", configure_pool_process(index, processes, settings).describe())
    apply_job_memory_limit(settings.job_memory_limit_bytes)


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
