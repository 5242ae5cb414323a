"""Typed errors of the client: each carries the service's stable `code` and its message."""

from typing import Any

import httpx


class GauntletError(Exception):
    """Any failure the client reports: `code` is the service's stable error code, `status` the HTTP status."""

    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, details: Any = None
    ) -> None:
        super().__init__(f"{code or self.code}: {message}")
        self.message = message
        self.code = code or self.code
        self.status = status
        self.details = details


class BadRequest(GauntletError):
    """400: the service could not use the request."""

    code = "bad_request"


class Unauthorized(GauntletError):
    """401: a missing, malformed, unknown or revoked API key."""

    code = "unauthorized"


class NotFound(GauntletError):
    """404: no such object for this tenant."""

    code = "not_found"


class Conflict(GauntletError):
    """409: the object's state does not allow the request (a report before the job succeeded, ...)."""

    code = "conflict"


class PayloadTooLarge(GauntletError):
    """413: an upload over the service's size limit."""

    code = "payload_too_large"


class UnsupportedMediaType(GauntletError):
    """415: a body in a format the route does not take."""

    code = "unsupported_media_type"


class InvalidInput(GauntletError):
    """422: a request that does not validate or makes no sense (the code says which rule)."""

    code = "invalid_input"


class RateLimited(GauntletError):
    """429: too many requests, still refused after the client's retries."""

    code = "rate_limited"


class ServerError(GauntletError):
    """5xx: the service failed (503 still unavailable after the client's retries)."""

    code = "internal"


class ConnectionFailed(GauntletError):
    """The service could not be reached, still after the client's retries."""

    code = "connection_failed"


class ModelInvalid(GauntletError):
    """An uploaded model that validation refused; `code` is the model's `invalid_code`."""

    code = "invalid"

    def __init__(self, model_id: str, code: str | None, reason: str | None) -> None:
        super().__init__(
            f"model {model_id} is invalid: {reason or 'no reason given'}", code=code or "invalid"
        )
        self.model_id = model_id
        self.reason = reason


class JobFailed(GauntletError):
    """A job that ended `failed` or `cancelled`; `code` is the job's error code (or `cancelled`)."""

    code = "job_failed"

    def __init__(self, job_id: str, status: str, code: str | None, message: str | None) -> None:
        super().__init__(f"job {job_id} {status}: {message or status}", code=code or status)
        self.job_id = job_id
        self.job_status = status


class WaitTimeout(GauntletError):
    """A wait for a model or a job that ran past its timeout."""

    code = "timeout"


BY_STATUS: dict[int, type[GauntletError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidInput,
    429: RateLimited,
}


def error_from_response(response: httpx.Response) -> GauntletError:
    """The typed error for a failed answer, from its `{"error": {"code", "message"}}` body."""
    code, message, details = None, response.reason_phrase or f"HTTP {response.status_code}", None
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code")) if error.get("code") else None
        message = str(error.get("message") or message)
        details = error.get("details")
    status = response.status_code
    kind = BY_STATUS.get(status, ServerError if status >= 500 else GauntletError)
    return kind(message, code=code, status=status, details=details)
