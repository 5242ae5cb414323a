"""Content-addressed blob storage in the database, and the collection of blobs nothing references."""

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import NotFound, PayloadTooLarge
from app.orm import Artifact, Blob, DatasetRecord, JobShard, ModelRecord, utcnow

COLLECT_BATCH = 100


def put_blob(session: Session, data: bytes, *, max_bytes: int) -> str:
    """Store bytes once per content; returns their SHA-256.

    An existing blob's `last_used_at` is refreshed in the same transaction as the new reference, so a
    concurrent collection (which only deletes blobs unused for a grace period) never removes it.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{len(data)} bytes is over the limit of {max_bytes} bytes")
    digest = hashlib.sha256(data).hexdigest()
    touched = rowcount(
        session.execute(update(Blob).where(Blob.sha256 == digest).values(last_used_at=utcnow()))
    )
    if not touched:
        try:
            with session.begin_nested():
                session.add(Blob(sha256=digest, size=len(data), data=data, last_used_at=utcnow()))
        except IntegrityError:
            pass  # stored concurrently by another request: same content, same digest
    return digest


def get_blob(session: Session, digest: str) -> bytes:
    """The bytes stored under a digest."""
    blob = session.get(Blob, digest)
    if blob is None:
        raise NotFound("blob not found")
    return blob.data


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched (its result is a CursorResult)."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _unreferenced(grace_s: float) -> list[ColumnElement[bool]]:
    """Conditions of a blob that no model, dataset or artifact references and nobody used lately."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    return [
        func.coalesce(Blob.last_used_at, Blob.created_at) < cutoff,
        ~exists().where(ModelRecord.blob_sha256 == Blob.sha256),
        ~exists().where(DatasetRecord.blob_sha256 == Blob.sha256),
        ~exists().where(Artifact.blob_sha256 == Blob.sha256),
        ~exists().where(JobShard.result_sha256 == Blob.sha256),
    ]


def collect_unreferenced_blobs(session: Session, grace_s: float, limit: int = COLLECT_BATCH) -> list[str]:
    """Delete up to `limit` blobs that nothing references and nobody used for `grace_s`; their digests."""
    digests = list(session.scalars(select(Blob.sha256).where(*_unreferenced(grace_s)).limit(limit)))
    deleted: list[str] = []
    for digest in digests:
        try:
            with session.begin_nested():
                gone = rowcount(
                    session.execute(delete(Blob).where(Blob.sha256 == digest, *_unreferenced(grace_s)))
                )
        except IntegrityError:
            continue  # referenced by a row committed meanwhile: keep it
        if gone:
            deleted.append(digest)
    session.commit()
    return deleted
