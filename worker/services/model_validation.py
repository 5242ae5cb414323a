"""Validate a model to `ready` or `invalid` (with a reason), in a child process under kernel limits.

The Celery task claims an attempt on the model row, starts `worker.services.validation_child` with
`RLIMIT_AS = worker_memory_limit_bytes` and a SIGKILL at `validation_time_limit_s`, and beats the
model's heartbeat while it waits (the reconciler never re-sends a validation that beats). A model
deleted meanwhile stops the child at the next beat. The child runs `run_intake` and reports back;
a child that hit a limit leaves the model `invalid` with `resource_limit` or `validation_timeout`.
"""

import logging
from collections.abc import Callable

from celery.exceptions import SoftTimeLimitExceeded

from app.model_formats import facts_of
from app.orm import ModelRecord
from app.settings import Settings
from worker.engine.models.architecture_intake import validate_architecture
from worker.engine.models.intake import (
    IntakeLimits,
    IntakeReport,
    ModelRejected,
    validate_onnx,
    validate_safetensors,
)
from worker.engine.models.intake.declared_interface import declared_interface
from worker.remote_model import validate_remote
from worker.runtime import WorkerRuntime
from worker.services.sandbox import ChildResult, run_limited
from worker.services.validation_state import (
    beat_validation,
    claim_validation,
    finish_validation,
    outcome_values,
)

log = logging.getLogger("gauntlet.models")
CHILD_MODULE = "worker.services.validation_child"


def intake_limits(settings: Settings) -> IntakeLimits:
    """The ONNX intake limits from the settings (also for onnxruntime sessions of jobs)."""
    return IntakeLimits(
        max_input_elements=settings.max_input_elements,
        max_intermediate_bytes=settings.max_intermediate_bytes,
        allow_control_flow=settings.allow_control_flow,
        intra_op_threads=settings.onnxruntime_threads,
    )


def interface_of(record: ModelRecord, blob: bytes | None) -> tuple[list[int], int]:
    """The model's input shape and class count: as uploaded, or read from a graph that states them."""
    if record.input_shape and record.num_classes:
        return [int(d) for d in record.input_shape], int(record.num_classes)
    if not facts_of(record).states_interface or not blob:
        raise ModelRejected("shape_unknown", "input_shape and num_classes are required for this format")
    declared = declared_interface(blob)
    return declared.input_shape, declared.num_classes


# One intake per stored format (app.model_formats.FORMATS): None when the row lacks the format's source.
Intake = Callable[[Settings, ModelRecord, bytes | None, tuple[float, float]], IntakeReport | None]


def _onnx_intake(
    settings: Settings, record: ModelRecord, blob: bytes | None, input_range: tuple[float, float]
) -> IntakeReport | None:
    if not blob:
        return None
    limits = intake_limits(settings)
    return validate_onnx(blob, record.input_shape, record.num_classes, input_range, limits=limits)


def _safetensors_intake(
    settings: Settings, record: ModelRecord, blob: bytes | None, input_range: tuple[float, float]
) -> IntakeReport | None:
    if not blob:
        return None
    return validate_safetensors(blob, record.architecture or "", record.input_shape, record.num_classes)


def _remote_intake(
    settings: Settings, record: ModelRecord, blob: bytes | None, input_range: tuple[float, float]
) -> IntakeReport | None:
    if not record.endpoint_url:
        return None
    return validate_remote(
        record.endpoint_url,
        record.input_shape,
        record.num_classes,
        input_range,
        settings.remote_host_allowlist,
        timeout=settings.remote_timeout_s,
        retries=min(settings.remote_retries, 2),
    )


def _architecture_intake(
    settings: Settings, record: ModelRecord, blob: bytes | None, input_range: tuple[float, float]
) -> IntakeReport | None:
    if not record.architecture:
        return None
    return validate_architecture(record.architecture, record.input_shape, record.num_classes)


INTAKES: dict[str, Intake] = {
    "onnx": _onnx_intake,
    "safetensors": _safetensors_intake,
    "remote": _remote_intake,
    "architecture": _architecture_intake,
}


def run_intake(settings: Settings, record: ModelRecord, blob: bytes | None) -> IntakeReport:
    """The intake of the model's format (runs inside the validation child)."""
    input_range = (float(record.input_range[0]), float(record.input_range[1]))
    intake = INTAKES.get(record.format)
    report = intake(settings, record, blob, input_range) if intake is not None else None
    if report is None:
        raise ModelRejected(
            "unsupported_format", f"this worker cannot validate models of format {record.format!r}"
        )
    return report


def validate_model(rt: WorkerRuntime, model_id: str) -> None:
    """Validate a model still in `validating`; anything else is a no-op (tasks are idempotent)."""
    attempt = claim_validation(rt, model_id)
    if attempt is None:
        log.info("model %s: not validating, already being validated, or out of attempts", model_id)
        return
    settings = rt.settings
    try:
        result = run_limited(
            CHILD_MODULE,
            {"model_id": model_id, "settings": settings.model_dump(mode="json")},
            memory_bytes=settings.worker_memory_limit_bytes,
            time_limit_s=settings.validation_time_limit_s,
            keep_going=lambda: beat_validation(rt, model_id, attempt),
            poll_s=min(settings.heartbeat_interval_s, 2.0),
            on_start=lambda pid: log.info(
                "model %s: attempt %d validating in child pid %d", model_id, attempt, pid
            ),
        )
    except SoftTimeLimitExceeded:
        result = ChildResult(
            "timeout", None, "the task's soft time limit", float(settings.validation_time_limit_s)
        )
    if result.outcome == "stopped":
        log.info("model %s: validation stopped: the model was deleted or taken over", model_id)
        return
    if result.outcome != "finished":
        log.warning("model %s: validation child %s: %s", model_id, result.outcome, result.detail[-2000:])
    values = outcome_values(result, settings.validation_time_limit_s, settings.worker_memory_limit_bytes)
    if values is None or not finish_validation(rt, model_id, attempt, values):
        log.info("model %s: validation ended but the model is gone or no longer this attempt's", model_id)
        return
    log.info(
        "model %s: %s (%s) after %.1f s",
        model_id,
        values["status"],
        values.get("invalid_code"),
        result.seconds,
    )
