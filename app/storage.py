"""Content-addressed blob storage in the database."""

import hashlib

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import NotFound, PayloadTooLarge
from app.orm import Blob


def put_blob(session: Session, data: bytes, *, max_bytes: int) -> str:
    """Store bytes once per content; returns their SHA-256."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{len(data)} bytes is over the limit of {max_bytes} bytes")
    digest = hashlib.sha256(data).hexdigest()
    if session.get(Blob, digest) is None:
        try:
            with session.begin_nested():
                session.add(Blob(sha256=digest, size=len(data), data=data))
        except IntegrityError:
            pass  # stored concurrently by another request: same content, same digest
    return digest


def get_blob(session: Session, digest: str) -> bytes:
    """The bytes stored under a digest."""
    blob = session.get(Blob, digest)
    if blob is None:
        raise NotFound("blob not found")
    return blob.data
