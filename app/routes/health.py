"""Liveness, readiness and Prometheus metrics."""

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.errors import Unauthorized
from app.routes.responses import errors

router = APIRouter(tags=["health"])
log = logging.getLogger("gauntlet.health")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The database or the broker does not answer"}})
def readyz(request: Request) -> JSONResponse:
    """The database and the broker answer."""
    checks: dict[str, str] = {}
    try:
        with request.app.state.session_factory() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        log.exception("readiness: database check failed")
        checks["database"] = "unavailable"
    try:
        request.app.state.queue.ping_broker()
        checks["broker"] = "ok"
    except Exception:
        log.exception("readiness: broker check failed")
        checks["broker"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


METRICS_RESPONSES = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    **errors(401),
}


@router.get("/metrics", response_class=Response, responses=METRICS_RESPONSES)
def metrics(request: Request) -> Response:
    """Prometheus metrics: this API process's requests and the service's own figures from the database.

    With `GAUNTLET_METRICS_TOKEN` set, send it as `Authorization: Bearer <token>`.
    """
    _check_metrics_token(request)
    body = generate_latest() + generate_latest(request.app.state.service_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _check_metrics_token(request: Request) -> None:
    """401 unless the configured metrics token (if any) is presented."""
    token = request.app.state.settings.metrics_token
    if not token:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise Unauthorized("/metrics needs 'Authorization: Bearer <metrics token>'")
