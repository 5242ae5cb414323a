"""Jobs: submit a spec (a dict or a typed spec), read, list every page, cancel."""

import uuid
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from app.schemas.jobs import JobView
from gauntlet_client.job import Job
from gauntlet_client.transport import Transport


def spec_body(spec: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a spec: a typed spec dumped as JSON, a dict as it is (the service validates it)."""
    if isinstance(spec, BaseModel):
        return spec.model_dump(mode="json")
    return dict(spec)


class Jobs:
    """The tenant's jobs."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def submit(self, spec: BaseModel | dict[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Submit a job; the same idempotency key returns the same job.

        Without a key the client makes one per call, so a retry after a lost answer cannot submit twice.
        """
        key = idempotency_key or f"gauntlet-client-{uuid.uuid4()}"
        body = self._transport.json(
            "POST", "/v1/jobs", json=spec_body(spec), headers={"Idempotency-Key": key}
        )
        return Job(self._transport, JobView.model_validate(body))

    def get(self, job_id: str) -> Job:
        """A handle on an existing job."""
        return Job(self._transport, JobView.model_validate(self._transport.json("GET", f"/v1/jobs/{job_id}")))

    def list(
        self, *, status: str | None = None, kind: str | None = None, limit: int | None = None
    ) -> Iterator[Job]:
        """Every job, newest first, following the pages (`limit` is the page size)."""
        for item in self._transport.pages("/v1/jobs", {"status": status, "kind": kind, "limit": limit}):
            yield Job(self._transport, JobView.model_validate(item))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job."""
        body = self._transport.json("POST", f"/v1/jobs/{job_id}/cancel")
        return Job(self._transport, JobView.model_validate(body))
