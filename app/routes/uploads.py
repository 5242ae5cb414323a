"""Reading uploads with a hard size limit, and telling a caller which media type a body needs."""

import json
from typing import NoReturn

from starlette.datastructures import UploadFile

from app.errors import PayloadTooLarge, UnsupportedMediaType

CHUNK_BYTES = 1024 * 1024
JSON_HINT = (
    "the body is JSON but was not sent as application/json (curl -d sends "
    "application/x-www-form-urlencoded): add the header 'Content-Type: application/json' "
    "(curl -H 'Content-Type: application/json' -d @spec.json)"
)


async def read_limited(upload: UploadFile, max_bytes: int) -> bytes:
    """The upload's bytes; 413 as soon as it passes max_bytes."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"the upload is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def looks_like_json(body: bytes) -> bool:
    """Whether a body parses as a JSON object or array (what a JSON route expects)."""
    try:
        return isinstance(json.loads(body), dict | list)
    except (ValueError, RecursionError):
        return False


def refuse_media_type(body: bytes, advice: str) -> NoReturn:
    """415 for a body of the wrong media type; a JSON body sent without its content type is named so."""
    if looks_like_json(body):
        raise UnsupportedMediaType(JSON_HINT, code="json_without_content_type")
    raise UnsupportedMediaType(advice)
