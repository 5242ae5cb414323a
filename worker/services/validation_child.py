"""The child process that validates one model: `python -m worker.services.validation_child REQUEST.json`.

It applies the sandbox limits before importing anything heavy, reads the model row and its bytes,
runs the intake and writes `{"status": "ready" | "invalid" | "error" | "gone", ...}` to the
request's `result_path`. It never writes to the database: the worker that started it does.
"""

import json
import sys
import traceback
from pathlib import Path
from typing import Any

from worker.services.sandbox import apply_child_limits

MEMORY_MARKERS = (
    "bad_alloc",
    "bad allocation",
    "failed to allocate",
    "out of memory",
    "can't allocate memory",
    "cannot allocate memory",
)


def is_memory_failure(exc: BaseException) -> bool:
    """Whether an exception (or one it was raised from) is an allocation failure."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, MemoryError) or any(m in str(seen).lower() for m in MEMORY_MARKERS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _memory_result(limit: int) -> dict[str, Any]:
    """The result of a validation that ran out of memory."""
    return {
        "status": "invalid",
        "code": "resource_limit",
        "message": f"Validating the model needed more memory than this worker allows ({limit} bytes, "
        "setting worker_memory_limit_bytes); the model allocates too much at run time.",
    }


def validate(request: dict[str, Any]) -> dict[str, Any]:
    """Load the model row and run its intake; every outcome becomes a JSON-able result."""
    limit = int(request["settings"]["worker_memory_limit_bytes"])
    try:
        from dataclasses import asdict

        from sqlalchemy.orm import Session

        from app.db import make_engine
        from app.orm import ModelRecord
        from app.settings import Settings
        from app.storage import get_blob
        from worker.engine.models.intake import ModelRejected
        from worker.services.model_validation import interface_of, run_intake

        settings = Settings(**request["settings"])
        engine = make_engine(settings)
        with Session(engine, expire_on_commit=False) as session:
            record = session.get(ModelRecord, request["model_id"])
            if record is None or record.status != "validating":
                return {"status": "gone"}
            blob = get_blob(session, record.blob_sha256) if record.blob_sha256 else None
            session.expunge(record)
        engine.dispose()
        try:
            record.input_shape, record.num_classes = interface_of(record, blob)
            report = run_intake(settings, record, blob)
        except ModelRejected as rejection:
            if rejection.code != "resource_limit" and is_memory_failure(rejection):
                return _memory_result(limit)
            return {"status": "invalid", "code": rejection.code, "message": rejection.message}
        return {
            "status": "ready",
            "white_box": report.white_box,
            "intake": asdict(report),
            "input_shape": record.input_shape,
            "num_classes": record.num_classes,
        }
    except Exception as exc:
        if is_memory_failure(exc):
            return _memory_result(limit)
        traceback.print_exc()
        return {"status": "error", "message": f"{type(exc).__name__}: {exc}"[:500]}


def main(argv: list[str]) -> int:
    """Apply the limits, validate, write the result."""
    apply_child_limits()
    request = json.loads(Path(argv[1]).read_text())
    try:
        result = validate(request)
    except MemoryError:
        result = _memory_result(int(request["settings"]["worker_memory_limit_bytes"]))
    Path(request["result_path"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
