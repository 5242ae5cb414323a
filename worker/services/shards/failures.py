"""A shard's failure as a stable code and message, as the job runner maps a job's."""

import logging

from celery.exceptions import SoftTimeLimitExceeded

from worker.engine.errors import EngineError
from worker.services.job_limits import is_out_of_memory
from worker.services.job_state import JobFailure

log = logging.getLogger("gauntlet.shards")


def failure_values(error: BaseException, where: str) -> dict[str, str]:
    """error_code and error_message for a failed shard: its own code, resource_limit, or internal."""
    if isinstance(error, JobFailure | EngineError):
        return {"error_code": error.code, "error_message": f"{where}: {error.message}"}
    if isinstance(error, ValueError):
        return {"error_code": "invalid_input", "error_message": f"{where}: {error}"}
    if isinstance(error, SoftTimeLimitExceeded):
        return {"error_code": "time_limit", "error_message": f"{where} ran past its time limit"}
    if is_out_of_memory(error):
        return {
            "error_code": "resource_limit",
            "error_message": f"{where} ran out of memory; lower batch_size or samples per shard",
        }
    log.error("%s: unexpected error", where, exc_info=error)
    return {
        "error_code": "internal",
        "error_message": f"{where} failed with an unexpected error; it has been logged",
    }
