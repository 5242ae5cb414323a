"""Views of the webhook signing secret and of webhook deliveries."""

from datetime import datetime

from pydantic import BaseModel


class WebhookSecretView(BaseModel):
    """A newly rotated signing secret; it is shown only in this answer."""

    secret: str
    rotated_at: datetime


class DeliveryView(BaseModel):
    """One webhook message about a job and how its delivery went."""

    id: str
    job_id: str
    event: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
