"""Domain errors and the one place that maps them (and everything else) to HTTP answers."""

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("gauntlet.api")


class DomainError(Exception):
    """An expected failure with a stable code, a message for people and an HTTP status."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class Unauthorized(DomainError):
    """Missing, malformed or unknown API key."""

    status_code = 401
    code = "unauthorized"


class NotFound(DomainError):
    """The object does not exist for this tenant (another tenant's object included)."""

    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    """The object is in a state that does not allow the request."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(DomainError):
    """An upload over the configured size limit."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    """An upload in a format the service does not accept."""

    status_code = 415
    code = "unsupported_media_type"


class InvalidInput(DomainError):
    """A request that is well-formed but makes no sense (incompatible shapes, bad eps, ...)."""

    status_code = 422
    code = "invalid_input"


HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON body of every error answer."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return body


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without echoing uploaded bytes back."""
    details = []
    for error in exc.errors():
        details.append({"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg"))})
    return details


def _wrong_media_type(request: Request, exc: RequestValidationError) -> tuple[str, str] | None:
    """(code, message) when a JSON route got a body of another media type, which it reads as raw bytes.

    A body that is JSON anyway (`curl -d` without `-H 'Content-Type: application/json'`) is named so.
    """
    if not isinstance(exc.body, bytes) or not exc.body:
        return None
    content_type = request.headers.get("content-type", "none")
    try:
        is_json = isinstance(json.loads(exc.body), dict | list)
    except (ValueError, RecursionError):
        is_json = False
    if is_json:
        return (
            "json_without_content_type",
            f"the body is JSON but was sent as {content_type} (curl -d does that): add the header "
            "'Content-Type: application/json' (curl -H 'Content-Type: application/json' -d @spec.json)",
        )
    return "unsupported_media_type", f"send the body as application/json, not {content_type}"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into a JSON error without a traceback."""

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        wrong_media = _wrong_media_type(request, exc)
        if wrong_media is not None:
            return JSONResponse(error_body(*wrong_media), status_code=415)
        details = _validation_details(exc)
        summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:5])
        return JSONResponse(error_body("invalid_request", summary, details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if (
            exc.status_code == 400
        ):  # a body the framework could not parse (JSON, multipart): a validation error
            return JSONResponse(error_body("invalid_request", str(exc.detail)), status_code=422)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        log.warning("refused a value the database cannot store on %s: %s", request.url.path, exc.orig)
        message = (
            "a value in the request cannot be stored (text with NUL characters or a number out of range)"
        )
        return JSONResponse(error_body("invalid_input", message), status_code=422)

    @app.exception_handler(RecursionError)
    async def _too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        return JSONResponse(
            error_body("invalid_request", "the request is nested too deeply"), status_code=422
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(request.method, request.url.path, exc)


def internal_error(method: str, path: str, exc: BaseException) -> JSONResponse:
    """Log an unexpected failure with its traceback and answer a 500 that carries none."""
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return JSONResponse(error_body("internal", "internal error; it has been logged"), status_code=500)
