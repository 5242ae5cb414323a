"""Load a job's typed spec, target and datasets out of the database, then close the session."""

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.orm import DatasetRecord, Job, ModelRecord
from app.schemas.jobs import AnyJobSpec, JobSpec
from app.services.dataset_arrays import BUILTIN_PREFIX, load_npz
from app.storage import get_blob
from worker.engine.datasets import ArrayDataset, DatasetError, load_builtin
from worker.engine.device import pick_device
from worker.engine.progress import ProgressCallback
from worker.runtime import WorkerRuntime
from worker.services.context import JobData, RunEnv
from worker.services.job_state import JobFailure, JobLost
from worker.services.targets import Target, build_target

# Dataset ids an executor makes itself (a synthetic query pool), not loaded from storage.
SYNTHETIC_PREFIX = "synthetic:"
_SPEC: TypeAdapter[AnyJobSpec] = TypeAdapter(JobSpec)


@dataclass
class LoadedJob:
    """A job ready to run: its typed spec, the model under test, its data and its environment."""

    spec: AnyJobSpec
    target: Target
    data: JobData
    env: RunEnv


def typed_spec(job: Job) -> AnyJobSpec:
    """The stored job read back into the same typed spec the API validated."""
    stored = {
        "kind": job.kind,
        "model_id": job.model_id,
        "dataset_id": job.dataset_id,
        "seed": job.seed,
        "params": job.params,
    }
    try:
        return _SPEC.validate_python(stored)
    except ValidationError as exc:
        raise JobFailure("spec_invalid", f"the stored spec no longer validates: {exc.errors()[:3]}") from exc


def _target(session: Session, job: Job, rt: WorkerRuntime) -> Target:
    """The job's model, scoped to the job's tenant, as a target."""
    record = session.scalar(
        select(ModelRecord).where(ModelRecord.id == job.model_id, ModelRecord.tenant_id == job.tenant_id)
    )
    if record is None:
        raise JobFailure("model_not_found", f"model {job.model_id} no longer exists")
    if record.status != "ready":
        raise JobFailure("model_invalid", f"model {job.model_id} is {record.status}")
    blob = get_blob(session, record.blob_sha256) if record.blob_sha256 else None
    return build_target(record, blob, rt.settings)


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


def load_job(rt: WorkerRuntime, job_id: str, progress: ProgressCallback) -> LoadedJob:
    """Everything the job's runner needs, read in one short session."""
    with rt.session_factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobLost(job_id)
        spec = typed_spec(job)
        target = _target(session, job, rt)
        input_range = target.signature.input_range
        held_out = load_dataset(session, job.tenant_id, job.dataset_id, input_range)
        named = {
            key: load_dataset(session, job.tenant_id, value, input_range)
            for key, value in extra_dataset_ids(job.params).items()
        }
        env = RunEnv(
            job_id=job.id,
            device=pick_device(rt.settings.device),
            seed=int(job.seed),
            progress=progress,
            settings=rt.settings,
        )
        return LoadedJob(spec=spec, target=target, data=JobData(held_out, named), env=env)
