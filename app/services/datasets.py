"""Dataset use cases: upload an `.npz`, list, read, delete; built-in datasets by name."""

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select

from app.errors import Conflict, InvalidInput, NotFound
from app.orm import DatasetRecord, Job
from app.schemas.resources import DatasetView
from app.services.context import ServiceContext
from app.services.dataset_arrays import BUILTIN_DATASETS, BUILTIN_PREFIX, DatasetFacts, inspect_npz
from app.services.pagination import decode_cursor, encode_cursor, fetch_page
from app.storage import put_blob

# The creation time a built-in dataset's cursor carries: they list before every upload.
BUILTIN_CREATED = datetime(9999, 12, 31, tzinfo=UTC)


def create_dataset(
    ctx: ServiceContext, name: str, data: bytes, *, num_classes: int | None = None
) -> DatasetRecord:
    """Check and store an uploaded `.npz` dataset; labels must lie below a declared class count."""
    if not name.strip() or len(name) > 200:
        raise InvalidInput("name must be 1 to 200 characters")
    facts = inspect_npz(data, ctx.settings.max_dataset_bytes)
    if num_classes is not None:
        if facts.num_classes > num_classes:
            raise InvalidInput(
                f"labels go up to {facts.num_classes - 1} but num_classes is {num_classes}: labels must lie "
                f"in 0..{num_classes - 1} (are they 1-based, or is num_classes too small?)",
                code="labels_exceed_classes",
            )
        facts = replace(facts, num_classes=num_classes)
    digest = put_blob(ctx.session, data, max_bytes=ctx.settings.max_upload_bytes)
    record = DatasetRecord(
        tenant_id=ctx.tenant_id,
        name=name,
        blob_sha256=digest,
        n_samples=facts.n_samples,
        sample_shape=list(facts.sample_shape),
        num_classes=facts.num_classes,
        dtype=facts.dtype,
        x_min=facts.x_min,
        x_max=facts.x_max,
        size_bytes=len(data),
    )
    ctx.session.add(record)
    ctx.session.commit()
    return record


def get_dataset(ctx: ServiceContext, dataset_id: str) -> DatasetRecord:
    """An uploaded dataset of this tenant; 404 for anything else."""
    record = ctx.session.scalar(
        select(DatasetRecord).where(DatasetRecord.id == dataset_id, DatasetRecord.tenant_id == ctx.tenant_id)
    )
    if record is None:
        raise NotFound(f"dataset {dataset_id} not found")
    return record


def dataset_facts(ctx: ServiceContext, dataset_id: str) -> DatasetFacts:
    """Facts about a built-in (`builtin:<name>`) or uploaded dataset."""
    if dataset_id.startswith(BUILTIN_PREFIX):
        facts = BUILTIN_DATASETS.get(dataset_id.removeprefix(BUILTIN_PREFIX))
        if facts is None:
            names = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_DATASETS)
            raise NotFound(f"unknown built-in dataset {dataset_id!r}; available: {names}")
        return facts
    record = get_dataset(ctx, dataset_id)
    return DatasetFacts(
        n_samples=record.n_samples,
        sample_shape=tuple(record.sample_shape),
        num_classes=record.num_classes,
        dtype=record.dtype,
        x_min=record.x_min,
        x_max=record.x_max,
    )


def _builtin_view(name: str, facts: DatasetFacts) -> DatasetView:
    """The API view of a built-in dataset."""
    return DatasetView(
        id=BUILTIN_PREFIX + name,
        name=name,
        n_samples=facts.n_samples,
        sample_shape=list(facts.sample_shape),
        num_classes=facts.num_classes,
        dtype=facts.dtype,
        x_min=facts.x_min,
        x_max=facts.x_max,
        size_bytes=0,
        builtin=True,
        created_at=None,
    )


def get_dataset_view(ctx: ServiceContext, dataset_id: str) -> DatasetView:
    """The view of a built-in or uploaded dataset."""
    if dataset_id.startswith(BUILTIN_PREFIX):
        name = dataset_id.removeprefix(BUILTIN_PREFIX)
        return _builtin_view(name, dataset_facts(ctx, dataset_id))
    return dataset_view(get_dataset(ctx, dataset_id))


def list_datasets(
    ctx: ServiceContext, *, cursor: str | None = None, limit: int = 100
) -> tuple[list[DatasetView], str | None]:
    """Built-in datasets followed by this tenant's uploads (newest first), one page at a time.

    The built-in ones sort before every upload: their cursor carries BUILTIN_CREATED as its time.
    """
    names = list(BUILTIN_DATASETS)
    start, upload_cursor = 0, None
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        if created != BUILTIN_CREATED:
            start, upload_cursor = len(names), cursor
        elif last_id.removeprefix(BUILTIN_PREFIX) in names:
            start = names.index(last_id.removeprefix(BUILTIN_PREFIX)) + 1
        else:
            raise InvalidInput("cursor is not valid; pass back the next_cursor of a previous page")
    views = [_builtin_view(name, BUILTIN_DATASETS[name]) for name in names[start : start + limit + 1]]
    if len(views) > limit:
        return views[:limit], encode_cursor(BUILTIN_CREATED, views[limit - 1].id)
    query = select(DatasetRecord).where(DatasetRecord.tenant_id == ctx.tenant_id)
    if len(views) == limit:
        more = ctx.session.scalar(query.limit(1)) is not None
        return views, encode_cursor(BUILTIN_CREATED, views[-1].id) if more else None
    rows, next_cursor = fetch_page(
        ctx.session, query, DatasetRecord, cursor=upload_cursor, limit=limit - len(views)
    )
    return views + [dataset_view(record) for record in rows], next_cursor


def delete_dataset(ctx: ServiceContext, dataset_id: str) -> None:
    """Delete an uploaded dataset; refused while one of its jobs is unfinished."""
    record = get_dataset(ctx, dataset_id)
    busy = ctx.session.scalar(
        select(Job.id).where(
            Job.dataset_id == record.id, Job.tenant_id == ctx.tenant_id, Job.status.in_(("queued", "running"))
        )
    )
    if busy is not None:
        raise Conflict(
            f"dataset {dataset_id} has unfinished jobs (e.g. {busy}); cancel them first",
            code="dataset_in_use",
        )
    ctx.session.delete(record)
    ctx.session.commit()


def dataset_view(record: DatasetRecord) -> DatasetView:
    """The API view of an uploaded dataset."""
    return DatasetView.model_validate(record, from_attributes=True)
