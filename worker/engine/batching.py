"""Batch bounds over a dataset, so memory stays flat as it grows, and batches fitted to the device."""

import logging
from collections.abc import Callable

import torch

log = logging.getLogger("gauntlet.engine")

# What torch says when an accelerator's allocator is out of memory (besides torch.OutOfMemoryError).
_DEVICE_MEMORY_MARKERS = ("cuda out of memory", "cublas_status_alloc_failed", "mps backend out of memory")


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Start and stop of each batch."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def is_device_out_of_memory(error: BaseException) -> bool:
    """Whether an error is an accelerator running out of memory (not the host's memory cap)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error).lower() for m in _DEVICE_MEMORY_MARKERS)


def _free_device_memory() -> None:
    """Hand cached blocks back to the device after an out-of-memory."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class BatchFit:
    """The largest batch that has fitted the device so far: a device out-of-memory halves it and retries.

    `run(start, stop, work)` calls work(a, b) on consecutive pieces of [start, stop) of at most the
    current size. When a piece runs out of device memory, the size is halved (and stays halved for
    later batches) and the same piece is retried, so no work is lost or done twice; at size 1 the
    error propagates (the job ends `resource_limit`). Pieces start at start + k * size, so where the
    halved size divides the batch size, the pieces are the batches of a run at the halved size (whose
    random streams are keyed by each batch's first sample position) and the report is that run's.
    """

    def __init__(self, size: int) -> None:
        """Start from the configured batch size."""
        if size < 1:
            raise ValueError("batch_size must be at least 1")
        self.size = size

    def run(self, start: int, stop: int, work: Callable[[int, int], None]) -> None:
        """Do work over [start, stop) in pieces that fit, halving on a device out-of-memory."""
        position = start
        while position < stop:
            end = min(position + self.size, stop)
            if self._fits(work, position, end):
                position = end

    def _fits(self, work: Callable[[int, int], None], start: int, stop: int) -> bool:
        """Run one piece; False (and a halved size) when it ran out of device memory."""
        try:
            work(start, stop)
        except Exception as error:
            if not is_device_out_of_memory(error) or stop - start <= 1:
                raise
            halved = max(1, (stop - start) // 2)
        else:
            return True
        # Outside the except block, so the failed attempt's tensors (held by the traceback) are freed.
        _free_device_memory()
        log.warning("device out of memory at a batch of %d: retrying at %d", stop - start, halved)
        self.size = halved
        return False
