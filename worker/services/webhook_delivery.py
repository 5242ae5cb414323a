"""Deliver signed webhooks from the delivery table, with exponential backoff between attempts.

A finished job with a `callback_url` gets one row in `webhook_deliveries` (one per job and event);
the job runner makes the first attempt at once and the reconciler makes the later ones (and creates
the row for a finished job whose runner died before it could). Each attempt is claimed on the row
first, so two workers never send the same attempt. A 2xx answer delivers the message; anything else
is retried after `webhook_retry_base_s * 2^(attempts-1)` (at most `webhook_retry_max_s`) until
`webhook_max_attempts`; a refused URL or address fails the delivery at once.
"""

import json
import logging
import time
from datetime import timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.orm import TERMINAL_JOB_STATES, Job, Tenant, WebhookDelivery, utcnow
from app.webhooks import CallbackRefused, new_secret, sign
from worker.runtime import WorkerRuntime
from worker.services.pinned_http import post_pinned

log = logging.getLogger("gauntlet.webhooks")
DUE_BATCH = 20
SWEEP_WINDOW = timedelta(days=1)


def job_payload(job: Job) -> dict:
    """What a webhook about a finished job says (the same as the job runner's callback payload)."""
    if job.status == "succeeded":
        return {"id": job.id, "status": job.status, "summary": job.summary}
    return {"id": job.id, "status": job.status, "error_code": job.error_code}


def record_delivery(session: Session, job: Job, url: str, payload: dict) -> str:
    """The delivery row of this job's final event, created if new; its id (the `webhook-id`)."""
    event = f"job.{payload.get('status', job.status)}"
    existing = session.scalar(
        select(WebhookDelivery.id).where(WebhookDelivery.job_id == job.id, WebhookDelivery.event == event)
    )
    if existing is not None:
        return existing
    body = json.dumps({"type": event, "timestamp": utcnow().isoformat(), "data": payload}, sort_keys=True)
    row = WebhookDelivery(
        tenant_id=job.tenant_id, job_id=job.id, event=event, url=url, body=body, next_attempt_at=utcnow()
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # created concurrently (the runner and a reconciler)
        return record_delivery(session, job, url, payload)
    return row.id


def enqueue_for_job(rt: WorkerRuntime, job_id: str, url: str, payload: dict) -> str | None:
    """Record the delivery for a finished job; None when the job is gone."""
    with rt.session_factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            return None
        delivery_id = record_delivery(session, job, url, payload)
        session.commit()
        return delivery_id


def _claim(rt: WorkerRuntime, delivery_id: str) -> tuple[WebhookDelivery, str] | None:
    """Take the next attempt of a due delivery (and the tenant's secret, created if missing)."""
    now = utcnow()
    lease = now + timedelta(seconds=3 * rt.settings.webhook_timeout_s + 30)
    with rt.session_factory() as session:
        due = (WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        claimed = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, *due)
            .values(next_attempt_at=lease)
        ).rowcount
        if claimed != 1:
            session.commit()
            return None
        row = session.get(WebhookDelivery, delivery_id)
        tenant = session.get(Tenant, row.tenant_id)
        if tenant.webhook_secret is None:
            tenant.webhook_secret = new_secret()
        secret = tenant.webhook_secret
        session.commit()
        session.expunge(row)
        return row, secret


def _backoff(rt: WorkerRuntime, attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones."""
    settings = rt.settings
    return min(settings.webhook_retry_base_s * 2 ** (attempts - 1), settings.webhook_retry_max_s)


def attempt_delivery(rt: WorkerRuntime, delivery_id: str) -> bool:
    """Make one attempt if it is due and not taken; True when the message is now delivered."""
    claim = _claim(rt, delivery_id)
    if claim is None:
        return False
    row, secret = claim
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Gauntlet-Webhooks/1",
        "webhook-id": row.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, row.id, timestamp, row.body),
    }
    status_code, error, permanent = None, None, False
    try:
        status_code = post_pinned(
            row.url,
            row.body.encode(),
            headers,
            rt.settings.webhook_allowed_addresses,
            rt.settings.webhook_timeout_s,
        )
    except CallbackRefused as refused:
        error, permanent = f"{refused.code}: {refused.message}", True
    except (OSError, httpx.HTTPError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    delivered = status_code is not None and 200 <= status_code < 300
    attempts = row.attempts + 1
    values: dict = {"attempts": attempts, "last_status_code": status_code, "last_attempt_at": utcnow()}
    values["last_error"] = error if error else (None if delivered else f"the receiver answered {status_code}")
    if delivered:
        values |= {"status": "delivered", "delivered_at": utcnow(), "next_attempt_at": None}
    elif permanent or attempts >= rt.settings.webhook_max_attempts:
        values |= {"status": "failed", "next_attempt_at": None}
    else:
        values["next_attempt_at"] = utcnow() + timedelta(seconds=_backoff(rt, attempts))
    with rt.session_factory() as session:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row.id).values(**values))
        session.commit()
    log.info("webhook %s for job %s: attempt %d -> %s", row.id, row.job_id, attempts, status_code or error)
    return delivered


def _sweep_missing(rt: WorkerRuntime) -> None:
    """Create the delivery of recently finished jobs whose runner stopped before recording it."""
    since = utcnow() - SWEEP_WINDOW
    settle = utcnow() - timedelta(seconds=2 * rt.settings.webhook_timeout_s)
    with rt.session_factory() as session:
        missing = session.scalars(
            select(Job)
            .outerjoin(WebhookDelivery, WebhookDelivery.job_id == Job.id)
            .where(
                Job.callback_url.is_not(None),
                Job.status.in_(TERMINAL_JOB_STATES),
                Job.finished_at > since,
                Job.finished_at < settle,
                WebhookDelivery.id.is_(None),
            )
            .limit(DUE_BATCH)
        ).all()
        for job in missing:
            record_delivery(session, job, job.callback_url, job_payload(job))
        session.commit()


def deliver_due(rt: WorkerRuntime) -> list[str]:
    """A reconciler step: attempt every due delivery (a batch); the ids delivered."""
    _sweep_missing(rt)
    with rt.session_factory() as session:
        due = session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= utcnow())
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(DUE_BATCH)
        ).all()
    return [delivery_id for delivery_id in due if attempt_delivery(rt, delivery_id)]
