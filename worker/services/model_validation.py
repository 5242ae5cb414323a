"""Validate an uploaded model to `ready` or `invalid` (with a reason)."""

import logging
from dataclasses import asdict

from app.orm import ModelRecord, utcnow
from app.storage import get_blob
from worker.engine.models.architecture_intake import validate_architecture
from worker.engine.models.intake import ModelRejected, validate_onnx, validate_safetensors
from worker.remote_model import validate_remote
from worker.runtime import WorkerRuntime

log = logging.getLogger("gauntlet.models")


def validate_model(rt: WorkerRuntime, model_id: str) -> None:
    """Validate a model still in `validating`; anything else is a no-op (tasks are idempotent)."""
    with rt.session_factory() as session:
        record = session.get(ModelRecord, model_id)
        if record is None or record.status != "validating":
            return
        input_range = (float(record.input_range[0]), float(record.input_range[1]))
        try:
            if record.format == "onnx" and record.blob_sha256:
                report = validate_onnx(
                    get_blob(session, record.blob_sha256), record.input_shape, record.num_classes, input_range
                )
            elif record.format == "safetensors" and record.blob_sha256:
                report = validate_safetensors(
                    get_blob(session, record.blob_sha256),
                    record.architecture or "",
                    record.input_shape,
                    record.num_classes,
                )
            elif record.format == "remote" and record.endpoint_url:
                report = validate_remote(
                    record.endpoint_url,
                    record.input_shape,
                    record.num_classes,
                    input_range,
                    rt.settings.remote_host_allowlist,
                )
            elif record.format == "architecture" and record.architecture:
                report = validate_architecture(record.architecture, record.input_shape, record.num_classes)
            else:
                raise ModelRejected(
                    "unsupported_format", f"this worker cannot validate models of format {record.format!r}"
                )
        except ModelRejected as rejection:
            record.status, record.invalid_code, record.invalid_reason = (
                "invalid",
                rejection.code,
                rejection.message,
            )
        except Exception:
            log.exception("validation of model %s failed unexpectedly", model_id)
            record.status, record.invalid_code = "invalid", "internal"
            record.invalid_reason = "validation failed with an unexpected error; it has been logged"
        else:
            record.status, record.white_box, record.intake = "ready", report.white_box, asdict(report)
        record.validated_at = utcnow()
        session.commit()
        log.info("model %s: %s", model_id, record.status)
