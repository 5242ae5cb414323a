"""Webhook routes: rotate the signing secret, list a job's deliveries."""

from fastapi import APIRouter

from app.deps import Context
from app.routes.params import JobId
from app.routes.responses import PATH_422, errors
from app.schemas.resources import ItemList
from app.schemas.webhooks import DeliveryView, WebhookSecretView
from app.services import webhooks as service

router = APIRouter(prefix="/v1", tags=["webhooks"])


@router.post("/webhook-secret", status_code=201, response_model=WebhookSecretView, responses=errors(401))
def rotate_webhook_secret(ctx: Context) -> WebhookSecretView:
    """Create or replace the tenant's webhook signing secret; it is shown only in this answer."""
    return service.rotate_secret(ctx)


@router.get(
    "/jobs/{job_id}/deliveries",
    response_model=ItemList[DeliveryView],
    responses=errors(401, 404, 422, notes={422: PATH_422}),
)
def list_deliveries(job_id: JobId, ctx: Context) -> ItemList[DeliveryView]:
    """The job's webhook deliveries: attempts, last status, next attempt."""
    return ItemList[DeliveryView](items=service.list_deliveries(ctx, job_id))
