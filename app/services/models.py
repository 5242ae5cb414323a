"""Model use cases: upload, register a remote endpoint, list, read, delete."""

import json
import logging
import math
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from app.errors import Conflict, InvalidInput, NotFound, UnsupportedMediaType
from app.model_formats import UPLOAD_FORMATS, facts_of
from app.orm import Job, ModelRecord, utcnow
from app.schemas.resources import ARCHITECTURE_NAMES, ArchitectureModelCreate, ModelView, RemoteModelCreate
from app.services.context import ServiceContext
from app.services.model_limits import check_declared_shape
from app.services.pagination import fetch_page
from app.storage import put_blob

log = logging.getLogger("gauntlet.models")

ACCEPTED_FORMATS = UPLOAD_FORMATS
EXPORT_HINT = (
    "export the model to ONNX instead: torch.onnx.export(model.eval(), torch.rand(1, *input_shape), "
    "'model.onnx', dynamo=False, input_names=['input'], output_names=['logits'], "
    "dynamic_axes={'input': {0: 'batch'}})"
)


class UploadFields(BaseModel):
    """The form fields of a model upload, after JSON decoding."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    format: str
    # Left out (None) only for an ONNX graph that states them; validation reads them from the graph.
    input_shape: list[int] | None = Field(default=None, min_length=1, max_length=6)
    num_classes: int | None = Field(default=None, ge=2, le=100_000)
    input_range: list[float] = Field(default=[0.0, 1.0], min_length=2, max_length=2)
    architecture: str | None = None
    input_mean: list[float] | None = Field(default=None, min_length=1, max_length=4096)
    input_std: list[float] | None = Field(default=None, min_length=1, max_length=4096)


def _json_field(raw: str | None, field: str) -> object:
    """Decode a form field that holds JSON."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{field} must be JSON, for example [1, 8, 8]") from exc


def normalization_of(
    input_shape: list[int] | None, mean: list[float] | None, std: list[float] | None
) -> dict[str, list[float]] | None:
    """The declared per-channel normalization, checked against the input shape; None when not declared."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise InvalidInput("declare both input_mean and input_std, or neither")
    if input_shape is None:
        raise InvalidInput("input_mean and input_std need input_shape (their length is its channel count)")
    channels = input_shape[0]
    if len(mean) != channels or len(std) != channels:
        raise InvalidInput(
            f"input_mean and input_std need one value per channel ({channels}, the first "
            "dimension of input_shape)"
        )
    if not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v > 0 for v in std):
        raise InvalidInput("input_mean must be finite and input_std finite and positive")
    return {"mean": list(mean), "std": list(std)}


def parse_upload_fields(
    name: str,
    fmt: str,
    input_shape: str | None,
    num_classes: int | None,
    input_range: str | None,
    architecture: str | None,
    input_mean: str | None = None,
    input_std: str | None = None,
) -> UploadFields:
    """Validate the upload's form fields; 415 for refused formats, 422 for the rest."""
    if fmt.lower() not in ACCEPTED_FORMATS:
        raise UnsupportedMediaType(
            f"format {fmt!r} is not accepted; send 'onnx' or 'safetensors'. Pickles, torch.save files, "
            f"TorchScript and torch.export archives are refused because loading them runs code: {EXPORT_HINT}"
        )
    raw = {
        "name": name,
        "format": fmt.lower(),
        "input_shape": _json_field(input_shape, "input_shape"),
        "num_classes": num_classes,
        "architecture": architecture,
    }
    if input_range is not None:
        raw["input_range"] = _json_field(input_range, "input_range")
    if input_mean is not None:
        raw["input_mean"] = _json_field(input_mean, "input_mean")
    if input_std is not None:
        raw["input_std"] = _json_field(input_std, "input_std")
    try:
        fields = UploadFields.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
    if fields.input_shape is not None and any(d < 1 for d in fields.input_shape):
        raise InvalidInput("input_shape dimensions must be positive")
    facts = facts_of(fields)
    if not facts.states_interface and (fields.input_shape is None or fields.num_classes is None):
        raise InvalidInput(f"{fields.format} uploads need input_shape and num_classes")
    low, high = fields.input_range
    if not low < high:
        raise InvalidInput("input_range must be [low, high] with low < high")
    if facts.needs_architecture and fields.architecture not in ARCHITECTURE_NAMES:
        raise InvalidInput(f"safetensors uploads need architecture, one of {list(ARCHITECTURE_NAMES)}")
    if not facts.needs_architecture and fields.architecture is not None:
        raise InvalidInput("architecture only applies to safetensors uploads")
    return fields


def _register(ctx: ServiceContext, record: ModelRecord) -> ModelRecord:
    """Commit a new model as `validating`, then ask a worker to validate it."""
    ctx.session.add(record)
    ctx.session.commit()
    _enqueue_validation(ctx, record)
    return record


def _enqueue_validation(ctx: ServiceContext, record: ModelRecord) -> None:
    """Send the validation message after commit; the reconciler re-sends it if this fails."""
    try:
        ctx.queue.send_model_validation(record.id)
    except Exception:
        log.exception("could not enqueue validation of %s; the reconciler will retry", record.id)
        return
    record.enqueued_at = utcnow()
    ctx.session.commit()


def create_uploaded_model(ctx: ServiceContext, fields: UploadFields, data: bytes) -> ModelRecord:
    """Store an uploaded model as `validating` and ask a worker to validate it."""
    if not data:
        raise InvalidInput("the uploaded file is empty")
    digest = put_blob(ctx.session, data, max_bytes=ctx.settings.max_upload_bytes)
    record = ModelRecord(
        tenant_id=ctx.tenant_id,
        name=fields.name,
        format=fields.format,
        blob_sha256=digest,
        architecture=fields.architecture,
        normalization=normalization_of(fields.input_shape, fields.input_mean, fields.input_std),
        input_shape=fields.input_shape or [],
        num_classes=fields.num_classes or 0,
        input_range=fields.input_range,
        size_bytes=len(data),
    )
    return _register(ctx, record)


def create_remote_model(ctx: ServiceContext, body: RemoteModelCreate) -> ModelRecord:
    """Register a black-box endpoint whose host is on the operator's allowlist."""
    host = urlparse(str(body.endpoint_url)).hostname or ""
    if host not in ctx.settings.remote_host_allowlist:
        raise InvalidInput(
            f"host {host!r} is not on this service's remote-model allowlist", code="host_not_allowed"
        )
    record = ModelRecord(
        tenant_id=ctx.tenant_id,
        name=body.name,
        format="remote",
        endpoint_url=str(body.endpoint_url),
        normalization=normalization_of(body.input_shape, body.input_mean, body.input_std),
        input_shape=body.input_shape,
        num_classes=body.num_classes,
        input_range=body.input_range,
    )
    return _register(ctx, record)


def create_architecture_model(ctx: ServiceContext, body: ArchitectureModelCreate) -> ModelRecord:
    """Register a catalog architecture without weights; a worker checks that it fits the input shape."""
    if body.architecture not in ARCHITECTURE_NAMES:
        raise InvalidInput(
            f"unknown architecture {body.architecture!r}; available: {', '.join(ARCHITECTURE_NAMES)}",
            code="unknown_architecture",
        )
    low, high = body.input_range
    if not low < high:
        raise InvalidInput("input_range must be [low, high] with low < high")
    record = ModelRecord(
        tenant_id=ctx.tenant_id,
        name=body.name,
        format="architecture",
        architecture=body.architecture,
        input_shape=body.input_shape,
        num_classes=body.num_classes,
        input_range=body.input_range,
    )
    return _register(ctx, record)


def create_model_from_json(ctx: ServiceContext, raw: bytes) -> ModelRecord:
    """A JSON body: a catalog architecture (it names `architecture`) or a remote endpoint."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
    if isinstance(payload, dict):
        check_declared_shape(payload.get("input_shape"), ctx.settings.max_input_elements)
    schema = (
        ArchitectureModelCreate
        if isinstance(payload, dict) and "architecture" in payload
        else RemoteModelCreate
    )
    try:
        body = schema.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()[:10]
        )
        raise InvalidInput(f"invalid model body: {problems}", code="validation_error") from exc
    if isinstance(body, ArchitectureModelCreate):
        return create_architecture_model(ctx, body)
    return create_remote_model(ctx, body)


def get_model(ctx: ServiceContext, model_id: str) -> ModelRecord:
    """A model of this tenant; 404 for anything else."""
    record = ctx.session.scalar(
        select(ModelRecord).where(ModelRecord.id == model_id, ModelRecord.tenant_id == ctx.tenant_id)
    )
    if record is None:
        raise NotFound(f"model {model_id} not found")
    return record


def list_models(
    ctx: ServiceContext, *, cursor: str | None = None, limit: int = 100
) -> tuple[list[ModelRecord], str | None]:
    """This tenant's models, newest first, one page at a time."""
    query = select(ModelRecord).where(ModelRecord.tenant_id == ctx.tenant_id)
    return fetch_page(ctx.session, query, ModelRecord, cursor=cursor, limit=limit)


def delete_model(ctx: ServiceContext, model_id: str) -> None:
    """Delete a model and its jobs; refused while one of its jobs is running."""
    record = get_model(ctx, model_id)
    running = ctx.session.scalar(
        select(Job.id).where(
            Job.model_id == record.id, Job.tenant_id == ctx.tenant_id, Job.status.in_(("queued", "running"))
        )
    )
    if running is not None:
        raise Conflict(
            f"model {model_id} has unfinished jobs (e.g. {running}); cancel them first", code="model_in_use"
        )
    ctx.session.delete(record)
    ctx.session.commit()


def model_view(record: ModelRecord) -> ModelView:
    """The API view of a model."""
    return ModelView.model_validate(record, from_attributes=True)
