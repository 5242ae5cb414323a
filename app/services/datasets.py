"""Dataset use cases: upload an `.npz`, list, read, delete; built-in datasets by name."""

from sqlalchemy import select

from app.errors import Conflict, InvalidInput, NotFound
from app.orm import DatasetRecord, Job
from app.schemas.resources import DatasetView
from app.services.context import ServiceContext
from app.services.dataset_arrays import BUILTIN_DATASETS, BUILTIN_PREFIX, DatasetFacts, inspect_npz
from app.storage import put_blob


def create_dataset(ctx: ServiceContext, name: str, data: bytes) -> DatasetRecord:
    """Check and store an uploaded `.npz` dataset."""
    if not name.strip() or len(name) > 200:
        raise InvalidInput("name must be 1 to 200 characters")
    facts = inspect_npz(data, ctx.settings.max_dataset_bytes)
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


def list_datasets(ctx: ServiceContext) -> list[DatasetView]:
    """Built-in datasets followed by this tenant's uploads, newest first."""
    builtin = [_builtin_view(name, facts) for name, facts in BUILTIN_DATASETS.items()]
    query = select(DatasetRecord).where(DatasetRecord.tenant_id == ctx.tenant_id)
    uploaded = ctx.session.scalars(query.order_by(DatasetRecord.created_at.desc()))
    return builtin + [dataset_view(record) for record in uploaded]


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
