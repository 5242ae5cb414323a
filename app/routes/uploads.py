"""Reading uploads with a hard size limit, so an oversized body is refused without filling memory."""

from fastapi import UploadFile

from app.errors import PayloadTooLarge

CHUNK_BYTES = 1024 * 1024


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
