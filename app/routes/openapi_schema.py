"""The served OpenAPI document, finished: short operation ids, typed multipart uploads, JSON errors.

Generators such as openapi-python-client read an upload as a file only when its part is
`{"type": "string", "format": "binary"}`; FastAPI's OpenAPI 3.1 output may describe it with
`contentMediaType` alone, so every multipart part that carries a file is rewritten to that form.
"""

from typing import Any

from fastapi.routing import APIRoute

from app.routes.responses import json_error_media_types
from app.schemas.resources import MODEL_UPLOAD_FORM

BINARY = {"type": "string", "format": "binary"}
FORMS = {"ModelUploadForm": MODEL_UPLOAD_FORM}


def operation_id(route: APIRoute) -> str:
    """A route's operation id: its function's name (`upload_model`, `get_report`, ...)."""
    return route.name


def _binary_parts(schema: dict[str, Any]) -> None:
    """Rewrite the file parts of a multipart schema to `type: string, format: binary`."""
    for name, part in schema.get("properties", {}).items():
        if "contentMediaType" in part or part.get("format") == "binary":
            schema["properties"][name] = {
                **BINARY,
                **{k: part[k] for k in ("description", "title") if k in part},
            }


def _multipart_schemas(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every multipart/form-data request schema, components resolved."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    found = []
    for item in document.get("paths", {}).values():
        for operation in item.values():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("multipart/form-data", {}).get("schema")
            if schema is None:
                continue
            ref = schema.get("$ref", "")
            found.append(components.get(ref.rsplit("/", 1)[-1], {}) if ref else schema)
    return found


def finish_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """Add the hand-declared forms, make upload parts binary, declare every error body as JSON."""
    document.setdefault("components", {}).setdefault("schemas", {}).update(FORMS)
    for schema in _multipart_schemas(document):
        _binary_parts(schema)
    return json_error_media_types(document)
