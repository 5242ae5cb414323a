"""What every service call needs: a session, the caller's tenant, settings and the queue."""

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.queue import JobQueue
from app.settings import Settings


@dataclass
class ServiceContext:
    """A request's database session, tenant, settings and job queue."""

    session: Session
    tenant_id: str
    settings: Settings
    queue: JobQueue
    # The tenant's name, when the caller's key lookup already read it (per-tenant job cost limits).
    tenant_name: str | None = None
