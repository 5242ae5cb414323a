"""The error body every 4xx and 5xx answer carries, and the documented error responses of each route."""

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    """One failed check of a request: where it is and what is wrong."""

    loc: list[str]
    msg: str


class ErrorInfo(BaseModel):
    """A stable, machine-readable code and a message for people."""

    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """`{"error": {"code", "message", "details"?}}`."""

    error: ErrorInfo


DESCRIPTIONS = {
    401: "Missing, malformed or unknown API key (`unauthorized`)",
    404: "No such object for this tenant; another tenant's objects are 404 too (`not_found`)",
    409: "The object's state does not allow this request (for example `report_not_ready`)",
    413: "The request body is over the upload limit (`payload_too_large`)",
    415: "The body's media type is not accepted (`unsupported_media_type`)",
    422: "The request failed validation (`invalid_request`, or a specific code such as `dataset_invalid`)",
}
# What a 422 means on routes whose only validated input is the path or the query.
PATH_422 = "A malformed id in the path (`invalid_request`)"
LIST_422 = "A `limit` outside 1 to 100 or a `cursor` that is not a previous page's (`invalid_cursor`)"


def errors(*statuses: int, notes: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route returns, each with the error body's schema.

    `notes` replaces the generic description of a status with what it means on this route.
    """
    notes = notes or {}
    return {
        status: {"model": ErrorBody, "description": notes.get(status, DESCRIPTIONS[status])}
        for status in statuses
    }


def json_error_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare every error body as application/json, also on routes that answer HTML or files."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if not status.startswith(("4", "5")) or not content:
                    continue
                refs = [
                    c for c in content.values() if c.get("schema", {}).get("$ref", "").endswith("/ErrorBody")
                ]
                if refs:
                    response["content"] = {"application/json": refs[0]}
    return schema
