"""Kernel-enforced limits on the process that runs jobs, and how a job that hits one is told apart."""

import resource


def apply_job_memory_limit(limit_bytes: int | None) -> None:
    """Cap the process's data segment (heap and private mappings) at limit_bytes; None leaves it alone.

    RLIMIT_DATA, not RLIMIT_AS: the address-space limit also counts the huge reservations CUDA makes at
    start-up, while the data limit counts what the job really allocates.
    """
    if limit_bytes is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = limit_bytes if hard == resource.RLIM_INFINITY else min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an exception says an allocation failed (Python's MemoryError or torch's allocator error)."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
