"""Completion webhooks: record a signed delivery for the finished job and make its first attempt."""

import logging

from worker.runtime import runtime
from worker.services.webhook_delivery import attempt_delivery, enqueue_for_job

log = logging.getLogger("gauntlet.callbacks")


def send_callback(url: str, payload: dict) -> None:
    """Record the job's webhook (payload["id"] is the job) and attempt it now; the reconciler retries.

    Failures are logged, never raised: the delivery row keeps the attempts and the last status.
    """
    rt = runtime()
    try:
        delivery_id = enqueue_for_job(rt, payload["id"], url, payload)
        if delivery_id is not None:
            attempt_delivery(rt, delivery_id)
    except Exception:
        log.exception("webhook for job %s to %s could not be recorded or attempted", payload.get("id"), url)
