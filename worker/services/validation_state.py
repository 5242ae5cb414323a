"""Guarded state of a model validation: claim an attempt, beat while it runs, store how it ended.

Like a job, a validation attempt is claimed on the model row (`validation_attempts` + 1, a fresh
`validation_heartbeat_at`) only while the model is `validating` and no other attempt is beating;
every later write names the attempt. After `max_attempts` attempts that never finished (their
worker died), the model is `invalid` with `validation_interrupted` instead of being tried again.
"""

from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update

from app.orm import ModelRecord, utcnow
from worker.runtime import WorkerRuntime
from worker.services.job_state import worker_identity
from worker.services.sandbox import ChildResult


def _free(rt: WorkerRuntime) -> Any:
    """The condition that no attempt is beating: never started, or its heartbeat went stale."""
    cutoff = utcnow() - timedelta(seconds=rt.settings.stale_after_s)
    return or_(ModelRecord.validation_heartbeat_at.is_(None), ModelRecord.validation_heartbeat_at < cutoff)


def interrupted_values(attempts: int) -> dict[str, Any]:
    """Column values of a model whose validation never finished after `attempts` attempts."""
    return {
        "status": "invalid",
        "invalid_code": "validation_interrupted",
        "invalid_reason": f"validation was interrupted {attempts} times without finishing (its worker "
        "stopped or was killed, for example by the machine running out of memory)",
        "validated_at": utcnow(),
    }


def claim_validation(rt: WorkerRuntime, model_id: str) -> int | None:
    """Start a validation attempt; its number, or None (not validating, running elsewhere, exhausted)."""
    with rt.session_factory() as session:
        attempts = session.scalar(
            select(ModelRecord.validation_attempts).where(
                ModelRecord.id == model_id, ModelRecord.status == "validating", _free(rt)
            )
        )
        if attempts is None:
            return None
        guard = (
            ModelRecord.id == model_id,
            ModelRecord.status == "validating",
            ModelRecord.validation_attempts == attempts,
            _free(rt),
        )
        if attempts >= rt.settings.max_attempts:
            session.execute(update(ModelRecord).where(*guard).values(**interrupted_values(attempts)))
            session.commit()
            return None
        now = utcnow()
        claimed = session.execute(
            update(ModelRecord)
            .where(*guard)
            .values(
                validation_attempts=attempts + 1,
                validation_started_at=now,
                validation_heartbeat_at=now,
                validation_worker=worker_identity(),
            )
        ).rowcount
        session.commit()
        return attempts + 1 if claimed == 1 else None


def _owned(model_id: str, attempt: int) -> tuple:
    """The WHERE clause that says this attempt still owns the validation."""
    return (
        ModelRecord.id == model_id,
        ModelRecord.status == "validating",
        ModelRecord.validation_attempts == attempt,
    )


def beat_validation(rt: WorkerRuntime, model_id: str, attempt: int) -> bool:
    """Refresh the heartbeat; False when the model was deleted or no longer belongs to this attempt."""
    with rt.session_factory() as session:
        owned = session.execute(
            update(ModelRecord).where(*_owned(model_id, attempt)).values(validation_heartbeat_at=utcnow())
        ).rowcount
        session.commit()
    return owned == 1


def outcome_values(result: ChildResult, time_limit_s: float, memory_bytes: int) -> dict[str, Any] | None:
    """The model's new columns for how the child ended; None when nothing is to be written."""
    if result.outcome == "stopped":
        return None
    if result.outcome == "timeout":
        return {
            "status": "invalid",
            "invalid_code": "validation_timeout",
            "invalid_reason": f"validation ran past its limit of {time_limit_s:g} s (setting "
            "validation_time_limit_s) and was stopped; the model is too slow to run",
        }
    if result.outcome == "killed" or (result.outcome == "failed" and "MemoryError" in result.detail):
        return {
            "status": "invalid",
            "invalid_code": "resource_limit",
            "invalid_reason": f"the validation process ended abnormally ({result.detail.splitlines()[0]}), "
            f"most likely by exceeding the memory limit of {memory_bytes} bytes "
            "(setting worker_memory_limit_bytes)",
        }
    payload = result.result or {}
    if payload.get("status") == "ready":
        interface = {key: payload[key] for key in ("input_shape", "num_classes") if key in payload}
        return {"status": "ready", "white_box": payload["white_box"], "intake": payload["intake"]} | interface
    if payload.get("status") == "invalid":
        return {"status": "invalid", "invalid_code": payload["code"], "invalid_reason": payload["message"]}
    if payload.get("status") == "gone":
        return None
    return {
        "status": "invalid",
        "invalid_code": "internal",
        "invalid_reason": "validation failed with an unexpected error; it has been logged",
    }


def finish_validation(rt: WorkerRuntime, model_id: str, attempt: int, values: dict[str, Any]) -> bool:
    """Store the outcome if this attempt still owns the validation."""
    with rt.session_factory() as session:
        stored = session.execute(
            update(ModelRecord).where(*_owned(model_id, attempt)).values(**values, validated_at=utcnow())
        ).rowcount
        session.commit()
    return stored == 1
