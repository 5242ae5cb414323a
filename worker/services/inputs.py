"""Load a job's model and datasets out of the database into a JobContext, then close the session."""

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.orm import DatasetRecord, Job, ModelRecord
from app.services.dataset_arrays import BUILTIN_PREFIX, load_npz
from app.settings import Settings
from app.storage import get_blob
from worker.engine.datasets import ArrayDataset, DatasetError, load_builtin
from worker.engine.device import pick_device
from worker.engine.progress import ProgressCallback
from worker.runtime import WorkerRuntime
from worker.services.context import JobContext, ModelSnapshot
from worker.services.job_state import JobFailure, JobLost
from worker.services.model_validation import intake_limits

# Dataset ids an executor makes itself (a synthetic query pool), not loaded from storage.
SYNTHETIC_PREFIX = "synthetic:"


def _model_snapshot(session: Session, job: Job, settings: Settings) -> ModelSnapshot:
    """The job's model, scoped to the job's tenant, with its bytes."""
    record = session.scalar(
        select(ModelRecord).where(ModelRecord.id == job.model_id, ModelRecord.tenant_id == job.tenant_id)
    )
    if record is None:
        raise JobFailure("model_not_found", f"model {job.model_id} no longer exists")
    if record.status != "ready":
        raise JobFailure("model_invalid", f"model {job.model_id} is {record.status}")
    return ModelSnapshot(
        id=record.id,
        tenant_id=record.tenant_id,
        name=record.name,
        format=record.format,
        input_shape=tuple(int(d) for d in record.input_shape),
        num_classes=int(record.num_classes),
        input_range=(float(record.input_range[0]), float(record.input_range[1])),
        white_box=bool(record.white_box),
        blob=get_blob(session, record.blob_sha256) if record.blob_sha256 else None,
        architecture=record.architecture,
        endpoint_url=record.endpoint_url,
        normalization=record.normalization,
        preprocessing=record.preprocessing,
        remote_allowlist=tuple(settings.remote_host_allowlist),
        intake_limits=intake_limits(settings),
    )


def load_dataset(
    session: Session, tenant_id: str, dataset_id: str, input_range: tuple[float, float]
) -> ArrayDataset:
    """A dataset of the tenant (or a built-in one) as float32 inputs in the input range and int64 labels."""
    if dataset_id.startswith(BUILTIN_PREFIX):
        try:
            data = load_builtin(dataset_id.removeprefix(BUILTIN_PREFIX))
        except DatasetError as exc:
            raise JobFailure("dataset_not_found", str(exc)) from exc
        low, high = input_range
        return ArrayDataset((data.x * (high - low) + low).astype(np.float32), data.y)
    record = session.scalar(
        select(DatasetRecord).where(DatasetRecord.id == dataset_id, DatasetRecord.tenant_id == tenant_id)
    )
    if record is None:
        raise JobFailure("dataset_not_found", f"dataset {dataset_id} no longer exists")
    try:
        x, y = load_npz(get_blob(session, record.blob_sha256), input_range)
    except InvalidInput as exc:
        raise JobFailure("dataset_invalid", exc.message) from exc
    return ArrayDataset(x, y)


def extra_dataset_ids(params: dict[str, Any]) -> dict[str, str]:
    """The params fields that name a dataset (`*_dataset_id`), except synthetic pools."""
    return {
        key: value
        for key, value in params.items()
        if key.endswith("_dataset_id") and isinstance(value, str) and not value.startswith(SYNTHETIC_PREFIX)
    }


def load_context(rt: WorkerRuntime, job_id: str, progress: ProgressCallback) -> JobContext:
    """Everything the job's executor needs, read in one short session."""
    with rt.session_factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobLost(job_id)
        model = _model_snapshot(session, job, rt.settings)
        data = load_dataset(session, job.tenant_id, job.dataset_id, model.input_range)
        datasets = {
            key: load_dataset(session, job.tenant_id, value, model.input_range)
            for key, value in extra_dataset_ids(job.params).items()
        }
        return JobContext(
            job_id=job.id,
            tenant_id=job.tenant_id,
            kind=job.kind,
            model_id=job.model_id,
            dataset_id=job.dataset_id,
            params=dict(job.params),
            seed=int(job.seed),
            created_at=job.created_at.isoformat(),
            model=model,
            data=data,
            datasets=datasets,
            settings=rt.settings,
            device=pick_device(rt.settings.device),
            progress=progress,
        )
