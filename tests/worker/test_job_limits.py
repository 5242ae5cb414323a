"""The kernel-enforced memory cap of job processes, and how an allocation failure is classified."""

import subprocess
import sys

from worker.services.job_limits import is_out_of_memory

ALLOCATE = """
import sys, torch
from worker.services.job_limits import apply_job_memory_limit, is_out_of_memory
apply_job_memory_limit(int(sys.argv[1]))
try:
    block = torch.ones(int(sys.argv[2]), dtype=torch.uint8)
except Exception as error:
    print("refused" if is_out_of_memory(error) else f"other: {error!r}")
else:
    print("allocated", int(block.sum()) > 0)
"""


def _run(limit: int, size: int) -> str:
    result = subprocess.run(
        [sys.executable, "-c", ALLOCATE, str(limit), str(size)], capture_output=True, text=True, timeout=120
    )
    return result.stdout.strip() or result.stderr[-500:]


def test_an_allocation_over_the_cap_is_refused_by_the_kernel_and_classified():
    assert _run(1 << 30, 3 << 30) == "refused"


def test_an_allocation_under_the_cap_succeeds():
    assert _run(2 << 30, 64 << 20) == "allocated True"


def test_out_of_memory_errors_are_told_apart():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))
