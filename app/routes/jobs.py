"""Job routes: thin wrappers over app.services.jobs."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from app.deps import Context
from app.orm import TERMINAL_JOB_STATES
from app.routes.params import JobId, job_cursor
from app.routes.responses import errors
from app.schemas.jobs import JOB_EXAMPLES, JobKind, JobPage, JobSpec, JobStatus, JobView
from app.schemas.resources import ArtifactView, ItemList
from app.services import jobs as service
from app.services.artifacts import artifact_view
from app.services.context import ServiceContext
from app.services.webhooks import check_callback
from app.storage import get_blob

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=errors(401, 422))
EVENT_POLL_SECONDS = 0.5


@router.post("", status_code=202, response_model=JobView, responses=errors(404, 409, 413))
def submit_job(
    ctx: Context,
    spec: Annotated[JobSpec, Body(openapi_examples=JOB_EXAMPLES)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobView:
    """Submit a job; the same Idempotency-Key returns the same job."""
    check_callback(ctx, str(spec.callback_url) if getattr(spec, "callback_url", None) else None)
    return service.job_view(service.submit_job(ctx, spec, idempotency_key))


@router.get("", response_model=JobPage)
def list_jobs(
    ctx: Context,
    status: JobStatus | None = None,
    kind: JobKind | None = None,
    cursor: Annotated[str | None, Depends(job_cursor)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JobPage:
    """List jobs newest first; follow next_cursor for more."""
    rows, next_cursor = service.list_jobs(ctx, status=status, kind=kind, cursor=cursor, limit=limit)
    return JobPage(items=[service.job_view(job) for job in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobView, responses=errors(404))
def get_job(job_id: JobId, ctx: Context) -> JobView:
    """Read a job's status, progress and stage."""
    return service.job_view(service.get_job(ctx, job_id))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobView, responses=errors(404, 409))
def cancel_job(job_id: JobId, ctx: Context) -> JobView:
    """Cancel a queued job at once, or a running one at its next batch."""
    return service.job_view(service.cancel_job(ctx, job_id))


@router.get("/{job_id}/report", responses=errors(404, 409))
def get_report(job_id: JobId, ctx: Context) -> dict[str, Any]:
    """The JSON robustness report; 409 while the job has not succeeded."""
    return service.get_report(ctx, job_id)


@router.get("/{job_id}/report.html", response_class=HTMLResponse, responses=errors(404, 409))
def get_report_html(job_id: JobId, ctx: Context) -> HTMLResponse:
    """The report for people, with plots."""
    artifact = service.get_report_html(ctx, job_id)
    return HTMLResponse(get_blob(ctx.session, artifact.blob_sha256).decode("utf-8"))


@router.get("/{job_id}/artifacts", response_model=ItemList[ArtifactView], responses=errors(404))
def list_artifacts(job_id: JobId, ctx: Context) -> ItemList[ArtifactView]:
    """Artifacts the job produced."""
    return ItemList[ArtifactView](items=[artifact_view(a) for a in service.list_artifacts(ctx, job_id)])


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **errors(404)},
)
async def job_events(job_id: JobId, request: Request, ctx: Context) -> StreamingResponse:
    """Server-sent events: one `state` event per change of status, progress or stage, until the job ends."""
    service.get_job(ctx, job_id)
    factory, tenant_id = request.app.state.session_factory, ctx.tenant_id
    ctx.session.close()

    async def stream() -> AsyncIterator[str]:
        last: tuple | None = None
        while not await request.is_disconnected():
            with factory() as session:
                job = service.get_job(ServiceContext(session, tenant_id, ctx.settings, ctx.queue), job_id)
                view = service.job_view(job)
            state = (view.status, round(view.progress, 4), view.stage)
            if state != last:
                last = state
                yield f"event: state\ndata: {json.dumps(view.model_dump(mode='json'))}\n\n"
            if view.status in TERMINAL_JOB_STATES:
                return
            await asyncio.sleep(EVENT_POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
