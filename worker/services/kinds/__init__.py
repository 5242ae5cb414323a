"""One executor per job kind: `execute(ctx: JobContext) -> JobOutput`, imported lazily (they load torch)."""

from collections.abc import Callable

from worker.services.context import JobContext
from worker.services.outputs import JobOutput

Executor = Callable[[JobContext], JobOutput]


def executor_for(kind: str) -> Executor | None:
    """The executor of a job kind, or None for a kind this worker does not run."""
    if kind == "evasion":
        from worker.services.kinds.evasion import execute

        return execute
    if kind == "extraction":
        from worker.services.kinds.extraction import execute as execute_extraction

        return execute_extraction
    if kind == "poisoning":
        from worker.services.kinds.poisoning import execute as execute_poisoning

        return execute_poisoning
    if kind == "defense":
        from worker.services.kinds.defense import execute as execute_defense

        return execute_defense
    return None
