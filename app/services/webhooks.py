"""Webhook use cases: rotate the tenant's signing secret, check a callback URL, list a job's deliveries."""

from sqlalchemy import select

from app.errors import InvalidInput
from app.orm import Tenant, WebhookDelivery, utcnow
from app.schemas.webhooks import DeliveryView, WebhookSecretView
from app.services.context import ServiceContext
from app.services.jobs import get_job
from app.webhooks import CallbackRefused, check_callback_url, check_literal_host, new_secret


def rotate_secret(ctx: ServiceContext) -> WebhookSecretView:
    """Replace the tenant's signing secret and return the new one (the only time it is shown)."""
    tenant = ctx.session.get(Tenant, ctx.tenant_id)
    assert tenant is not None  # the caller's key belongs to it
    tenant.webhook_secret = new_secret()
    ctx.session.commit()
    return WebhookSecretView(secret=tenant.webhook_secret, rotated_at=utcnow())


def check_callback(ctx: ServiceContext, url: str | None) -> None:
    """422 for a callback URL with credentials, another scheme, or a refused literal address."""
    if url is None:
        return
    try:
        _scheme, host, _port = check_callback_url(url)
        check_literal_host(host, ctx.settings.webhook_allowed_addresses)
    except CallbackRefused as refused:
        raise InvalidInput(refused.message, code=refused.code) from refused


def list_deliveries(ctx: ServiceContext, job_id: str) -> list[DeliveryView]:
    """The webhook deliveries of one of this tenant's jobs, oldest first."""
    job = get_job(ctx, job_id)
    rows = ctx.session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job.id, WebhookDelivery.tenant_id == ctx.tenant_id)
        .order_by(WebhookDelivery.created_at)
    )
    return [DeliveryView.model_validate(row, from_attributes=True) for row in rows]
