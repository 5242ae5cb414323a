"""Webhook routes: rotate the signing secret, list a job's deliveries."""

from fastapi import APIRouter

from app.deps import Context
from app.routes.params import JobId
from app.routes.responses import errors
from app.schemas.resources import ItemList
from app.schemas.webhooks import DeliveryView, WebhookSecretView
from app.services import webhooks as service

router = APIRouter(prefix="/v1", tags=["webhooks"], responses=errors(401))


@router.post("/webhook-secret", status_code=201, response_model=WebhookSecretView)
def rotate_webhook_secret(ctx: Context) -> WebhookSecretView:
    """Create or replace the tenant's webhook signing secret; it is shown only in this answer."""
    return service.rotate_secret(ctx)


@router.get("/jobs/{job_id}/deliveries", response_model=ItemList[DeliveryView], responses=errors(404, 422))
def list_deliveries(job_id: JobId, ctx: Context) -> ItemList[DeliveryView]:
    """The job's webhook deliveries: attempts, last status, next attempt."""
    return ItemList[DeliveryView](items=service.list_deliveries(ctx, job_id))
