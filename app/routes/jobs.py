"""Job routes: thin wrappers over app.services.jobs."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Body, Header, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import TypeAdapter

from app.deps import AutocommitContext, Context, ReaderContext
from app.orm import TERMINAL_JOB_STATES
from app.routes.params import Cursor, JobId, Limit
from app.routes.responses import LIST_422, PATH_422, errors
from app.schemas.jobs import JOB_EXAMPLES, JobKind, JobPage, JobSpec, JobStatus, JobView
from app.schemas.reports import Report
from app.schemas.resources import ArtifactPage
from app.services import jobs as service
from app.services.artifacts import artifact_view
from app.services.context import ServiceContext
from app.services.webhooks import check_callback
from app.storage import get_blob

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JOB_VIEW = TypeAdapter(JobView)
EVENT_POLL_SECONDS = 0.5
NOT_SUCCEEDED = "The job has not succeeded (yet): `report_not_ready`"
SUBMIT_ERRORS = errors(
    401,
    404,
    409,
    413,
    415,
    422,
    notes={
        404: "The model or a dataset of the spec does not exist for this tenant (`not_found`)",
        409: "The model is still validating (`model_not_ready`), or the Idempotency-Key was used with "
        "another spec (`idempotency_conflict`)",
        415: "The body is not application/json (`unsupported_media_type`); JSON sent without its content "
        "type, as `curl -d` does, is named so (`json_without_content_type`)",
        422: "The spec failed validation (`invalid_request`) or does not fit the model and data (a specific "
        "code such as `eps_out_of_range`, `class_mismatch`, `job_too_expensive`)",
    },
)


def _job_response(view: JobView, status_code: int = 200) -> Response:
    """A job view as FastAPI's response_model path would answer it (the same bytes and headers), without
    validating the view a second time in another thread-pool trip."""
    return Response(JOB_VIEW.dump_json(view, by_alias=True), status_code, media_type="application/json")


@router.post("", status_code=202, response_model=JobView, responses=SUBMIT_ERRORS)
def submit_job(
    ctx: AutocommitContext,
    spec: Annotated[JobSpec, Body(openapi_examples=JOB_EXAMPLES)],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Submit a job; the same Idempotency-Key returns the same job."""
    check_callback(ctx, str(spec.callback_url) if getattr(spec, "callback_url", None) else None)
    return _job_response(service.job_view(service.submit_job(ctx, spec, idempotency_key)), 202)


@router.get("", response_model=JobPage, responses=errors(401, 422, notes={422: LIST_422}))
def list_jobs(
    ctx: Context,
    status: JobStatus | None = None,
    kind: JobKind | None = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> JobPage:
    """List jobs newest first; follow next_cursor for more."""
    rows, next_cursor = service.list_jobs(ctx, status=status, kind=kind, cursor=cursor, limit=limit)
    return JobPage(items=[service.job_view(job) for job in rows], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobView, responses=errors(401, 404, 422, notes={422: PATH_422}))
def get_job(job_id: JobId, reader: ReaderContext) -> Response:
    """Read a job's status, progress and stage."""
    return _job_response(service.job_status(reader.engine, reader.tenant_id, job_id))


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobView,
    responses=errors(
        401, 404, 409, 422, notes={409: "The job already ended (`job_finished`)", 422: PATH_422}
    ),
)
def cancel_job(job_id: JobId, ctx: Context) -> JobView:
    """Cancel a queued job at once, or a running one at its next batch."""
    return service.job_view(service.cancel_job(ctx, job_id))


@router.get(
    "/{job_id}/report",
    response_model=Report,
    responses=errors(401, 404, 409, 422, notes={409: NOT_SUCCEEDED, 422: PATH_422}),
)
def get_report(job_id: JobId, ctx: Context) -> JSONResponse:
    """The JSON robustness report, one schema per job kind (told apart by `kind`); 409 until the job
    has succeeded. It is served exactly as the worker stored it."""
    return JSONResponse(service.get_report(ctx, job_id))


@router.get(
    "/{job_id}/report.html",
    response_class=HTMLResponse,
    responses=errors(401, 404, 409, 422, notes={409: NOT_SUCCEEDED, 422: PATH_422}),
)
def get_report_html(job_id: JobId, ctx: Context) -> HTMLResponse:
    """The report for people, with plots."""
    artifact = service.get_report_html(ctx, job_id)
    return HTMLResponse(get_blob(ctx.session, artifact.blob_sha256).decode("utf-8"))


@router.get(
    "/{job_id}/artifacts",
    response_model=ArtifactPage,
    responses=errors(401, 404, 422, notes={422: f"{PATH_422}; {LIST_422}"}),
)
def list_artifacts(job_id: JobId, ctx: Context, cursor: Cursor = None, limit: Limit = 100) -> ArtifactPage:
    """Artifacts the job produced, oldest first; follow next_cursor for more."""
    rows, next_cursor = service.list_artifacts(ctx, job_id, cursor=cursor, limit=limit)
    return ArtifactPage(items=[artifact_view(a) for a in rows], next_cursor=next_cursor)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **errors(401, 404, 422, notes={422: PATH_422})},
)
async def job_events(job_id: JobId, request: Request, ctx: Context) -> StreamingResponse:
    """Server-sent events until the job ends: a `shard` event per change of a shard's state (index,
    state, worker, attempts) and a `state` event (the job view) per change of status, progress or stage."""
    service.get_job(ctx, job_id)
    factory, tenant_id = request.app.state.session_factory, ctx.tenant_id
    ctx.session.close()

    async def stream() -> AsyncIterator[str]:
        last: tuple[object, ...] | None = None
        shards: dict[int, tuple[str, int]] = {}
        while not await request.is_disconnected():
            with factory() as session:
                job = service.get_job(ServiceContext(session, tenant_id, ctx.settings, ctx.queue), job_id)
                view = service.job_view(job)
            for shard in view.shards:
                if shards.get(shard.index) != (shard.state, shard.attempts):
                    shards[shard.index] = (shard.state, shard.attempts)
                    event = shard.model_dump(mode="json", include={"index", "state", "worker", "attempts"})
                    yield f"event: shard\ndata: {json.dumps(event)}\n\n"
            state = (view.status, round(view.progress, 4), view.stage)
            if state != last:
                last = state
                yield f"event: state\ndata: {json.dumps(view.model_dump(mode='json'))}\n\n"
            if view.status in TERMINAL_JOB_STATES:
                return
            await asyncio.sleep(EVENT_POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
