"""Run untrusted-input work in a child process whose limits the kernel enforces.

The child is a fresh interpreter (`python -m <module>`), so no thread pool or connection of the
worker crosses into it. Before it touches its input it applies, from its environment:
`RLIMIT_AS` (address space: an allocation past it fails), `RLIMIT_CPU` (a spinning native call is
killed), no core dumps, and a parent-death signal so it never outlives the worker. The parent
enforces the wall-clock limit with SIGKILL, which no native call can outlive, and can stop the
child early (the model was deleted). The request goes in as a JSON file, the result comes back as
a JSON file; stdout and stderr are only logs.
"""

import contextlib
import ctypes
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("gauntlet.sandbox")

MEMORY_ENV = "GAUNTLET_SANDBOX_MEMORY_BYTES"
CPU_ENV = "GAUNTLET_SANDBOX_CPU_S"
PARENT_ENV = "GAUNTLET_SANDBOX_PARENT_PID"
PR_SET_PDEATHSIG = 1
STDERR_TAIL = 4000
# RLIMIT_CPU is a backstop (the parent's SIGKILL is the wall-clock limit); threads share the budget.
CPU_SECONDS_PER_WALL_SECOND = 4

Outcome = Literal["finished", "timeout", "stopped", "killed", "failed"]


@dataclass(frozen=True)
class ChildResult:
    """How a child ended: `finished` with its JSON result, or why not (with the signal or stderr tail)."""

    outcome: Outcome
    result: dict[str, Any] | None
    detail: str
    seconds: float


def child_environment(memory_bytes: int, cpu_seconds: int) -> dict[str, str]:
    """The child's environment: the worker's, its limits, no GPU and few malloc arenas."""
    return {
        **os.environ,
        MEMORY_ENV: str(memory_bytes),
        CPU_ENV: str(cpu_seconds),
        PARENT_ENV: str(os.getpid()),
        "CUDA_VISIBLE_DEVICES": "",
        "MALLOC_ARENA_MAX": "2",
    }


def apply_child_limits() -> None:
    """In the child, before anything else: the kernel limits from the environment and the death signal."""
    memory = int(os.environ.get(MEMORY_ENV, "0"))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(os.environ.get(CPU_ENV, "0"))
    if cpu > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):
        os._exit(3)  # the worker died before the death signal was armed


def _kill(process: subprocess.Popen) -> None:
    """SIGKILL the child's process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _tail(path: Path) -> str:
    """The end of a log file."""
    return path.read_bytes()[-STDERR_TAIL:].decode("utf-8", "replace") if path.exists() else ""


def run_limited(
    module: str,
    request: dict[str, Any],
    *,
    memory_bytes: int,
    time_limit_s: float,
    keep_going: Callable[[], bool],
    poll_s: float = 1.0,
    on_start: Callable[[int], None] | None = None,
) -> ChildResult:
    """Run `python -m module` on a JSON request under the limits; `keep_going()` False stops it early."""
    with tempfile.TemporaryDirectory(prefix="gauntlet-sandbox-") as folder:
        request_path, result_path = Path(folder) / "request.json", Path(folder) / "result.json"
        stderr_path = Path(folder) / "stderr.log"
        request_path.write_text(json.dumps({**request, "result_path": str(result_path)}))
        started = time.monotonic()
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(  # noqa: S603 - our own module, run by this interpreter
                [sys.executable, "-m", module, str(request_path)],
                env=child_environment(memory_bytes, int(time_limit_s) * CPU_SECONDS_PER_WALL_SECOND + 5),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        if on_start is not None:
            on_start(process.pid)
        try:
            outcome = _wait(process, started + time_limit_s, keep_going, poll_s)
        finally:
            if process.poll() is None:
                _kill(process)
        seconds = time.monotonic() - started
        if outcome is not None:
            return ChildResult(outcome, None, _tail(stderr_path), seconds)
        if process.returncode == 0 and result_path.exists():
            return ChildResult("finished", json.loads(result_path.read_text()), "", seconds)
        if process.returncode == -signal.SIGXCPU:
            return ChildResult("timeout", None, f"SIGXCPU\n{_tail(stderr_path)}", seconds)
        if process.returncode < 0:
            name = signal.Signals(-process.returncode).name
            return ChildResult("killed", None, f"{name}\n{_tail(stderr_path)}", seconds)
        return ChildResult("failed", None, f"exit code {process.returncode}\n{_tail(stderr_path)}", seconds)


def _wait(
    process: subprocess.Popen, deadline: float, keep_going: Callable[[], bool], poll_s: float
) -> Outcome | None:
    """Wait for the child; None when it exited by itself, else why it was killed."""
    while True:
        try:
            process.wait(timeout=max(0.01, min(poll_s, deadline - time.monotonic())))
            return None
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            _kill(process)
            return "timeout"
        if not keep_going():
            _kill(process)
            return "stopped"
