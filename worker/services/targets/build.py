"""Build the target of a model row: the one place that tells the sources apart by their stored format."""

from app.orm import ModelRecord
from app.settings import Settings
from worker.services.job_state import JobFailure
from worker.services.model_validation import intake_limits
from worker.services.targets.base import Signature, Target
from worker.services.targets.defended import DefendedTarget
from worker.services.targets.local import ArchitectureTarget, OnnxTarget, SafetensorsTarget
from worker.services.targets.remote import RemoteTarget


def signature_of(record: ModelRecord) -> Signature:
    """The row's input shape, classes, range and declared normalization."""
    return Signature(
        input_shape=tuple(int(d) for d in record.input_shape),
        num_classes=int(record.num_classes),
        input_range=(float(record.input_range[0]), float(record.input_range[1])),
        normalization=record.normalization,
    )


def build_target(record: ModelRecord, blob: bytes | None, settings: Settings) -> Target:
    """The target for a ready model row and its stored bytes."""
    ident, name, signature = record.id, record.name, signature_of(record)
    target: Target
    if record.format == "onnx" and blob is not None:
        target = OnnxTarget(
            id=ident,
            name=name,
            signature=signature,
            blob=blob,
            white_box=bool(record.white_box),
            limits=intake_limits(settings),
        )
    elif record.format == "safetensors" and blob is not None and record.architecture:
        target = SafetensorsTarget(
            id=ident, name=name, signature=signature, blob=blob, architecture=record.architecture
        )
    elif record.format == "architecture" and record.architecture:
        target = ArchitectureTarget(
            id=ident, name=name, signature=signature, architecture=record.architecture
        )
    elif record.format == "remote" and record.endpoint_url:
        target = RemoteTarget(
            id=ident,
            name=name,
            signature=signature,
            url=record.endpoint_url,
            allowlist=tuple(settings.remote_host_allowlist),
            timeout=settings.remote_timeout_s,
            retries=settings.remote_retries,
        )
    else:
        raise JobFailure("model_invalid", f"model {record.id} has no usable {record.format} source")
    return DefendedTarget(target, record.preprocessing) if record.preprocessing else target
