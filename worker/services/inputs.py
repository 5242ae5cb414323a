"""Load a job's model and dataset from the database into engine objects."""

from collections.abc import Callable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from torch import nn

from app.errors import InvalidInput
from app.orm import DatasetRecord, Job, ModelRecord
from app.services.dataset_arrays import BUILTIN_PREFIX, load_npz
from app.storage import get_blob
from worker.engine.datasets import DatasetError, load_builtin
from worker.engine.models.black_box import QueryOnlyModel
from worker.engine.models.intake import (
    ModelRejected,
    OnnxRuntimeClassifier,
    load_onnx_module,
    load_safetensors_module,
)
from worker.engine.models.normalization import Normalized, normalized_classifier
from worker.remote_model import RemoteClassifier, RemoteModelError
from worker.services.job_state import JobFailure


def job_model_record(session: Session, job: Job) -> ModelRecord:
    """The job's model, scoped to the job's tenant."""
    record = session.scalar(
        select(ModelRecord).where(ModelRecord.id == job.model_id, ModelRecord.tenant_id == job.tenant_id)
    )
    if record is None:
        raise JobFailure("model_not_found", f"model {job.model_id} no longer exists")
    if record.status != "ready":
        raise JobFailure("model_invalid", f"model {job.model_id} is {record.status}")
    return record


def _with_normalization(record: ModelRecord, module: nn.Module) -> nn.Module:
    """The module behind its declared normalization, so attacks work on inputs in the input range."""
    if not record.normalization:
        return module
    norm = record.normalization
    return Normalized(module, norm["mean"], norm["std"], len(record.input_shape)).eval()


def _normalizing(
    record: ModelRecord, classify: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """A NumPy classifier behind the model's declared normalization."""
    if not record.normalization:
        return classify
    norm = record.normalization
    return normalized_classifier(classify, norm["mean"], norm["std"], len(record.input_shape))


def load_white_box_model(session: Session, record: ModelRecord) -> nn.Module:
    """A differentiable torch module for an uploaded model (eval mode)."""
    if record.blob_sha256 is None or not record.white_box:
        raise JobFailure("needs_white_box", f"model {record.id} can only be queried black-box")
    data = get_blob(session, record.blob_sha256)
    try:
        if record.format == "onnx":
            return _with_normalization(record, load_onnx_module(data).eval())
        module = load_safetensors_module(
            data, record.architecture or "", record.input_shape, record.num_classes
        )
        return _with_normalization(record, module.eval())
    except ModelRejected as exc:
        raise JobFailure(exc.code, exc.message) from exc


def load_black_box_model(
    session: Session, record: ModelRecord, allowlist: list[str]
) -> QueryOnlyModel | None:
    """The model as black-box attacks see it: onnxruntime or the remote endpoint; None for safetensors."""
    if record.format == "onnx" and record.blob_sha256:
        return QueryOnlyModel(
            _normalizing(record, OnnxRuntimeClassifier(get_blob(session, record.blob_sha256)))
        )
    if record.format == "remote" and record.endpoint_url:
        remote = RemoteClassifier(
            record.endpoint_url,
            input_shape=record.input_shape,
            num_classes=record.num_classes,
            allowlist=allowlist,
        )

        def classify(x: np.ndarray) -> np.ndarray:
            try:
                return remote(x)
            except RemoteModelError as exc:
                raise JobFailure(exc.code, exc.message) from exc

        return QueryOnlyModel(_normalizing(record, classify))
    return None


def load_job_dataset(
    session: Session, job: Job, input_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The job's dataset as float32 inputs in the model's input range and int64 labels."""
    if job.dataset_id.startswith(BUILTIN_PREFIX):
        try:
            data = load_builtin(job.dataset_id.removeprefix(BUILTIN_PREFIX))
        except DatasetError as exc:
            raise JobFailure("dataset_not_found", str(exc)) from exc
        low, high = input_range
        return (data.x * (high - low) + low).astype(np.float32), data.y
    record = session.scalar(
        select(DatasetRecord).where(
            DatasetRecord.id == job.dataset_id, DatasetRecord.tenant_id == job.tenant_id
        )
    )
    if record is None:
        raise JobFailure("dataset_not_found", f"dataset {job.dataset_id} no longer exists")
    try:
        return load_npz(get_blob(session, record.blob_sha256), input_range)
    except InvalidInput as exc:
        raise JobFailure("dataset_invalid", exc.message) from exc
