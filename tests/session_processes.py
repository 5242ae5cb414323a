"""Every process a test fixture starts lives no longer than the pytest session that started it.

`spawn` starts a child in its own process group and registers the group. The groups die:
- when pytest ends normally or on SIGTERM/SIGINT: `kill_all`, wired into tests/conftest.py's
  pytest_configure (signal handlers, atexit) and pytest_unconfigure hooks;
- when pytest dies without running any code (SIGKILL, a crash): the child's parent-death signal
  (Linux prctl PR_SET_PDEATHSIG) stops the child itself, and a reaper process, started with the first
  child in a session of its own and fed each group over a pipe, SIGKILLs every group still registered
  when that pipe reaches end of file, grandchildren (a Celery worker's pool processes) included.
"""

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

PR_SET_PDEATHSIG = 1
PARENT_DEATH_SIGNAL = signal.SIGTERM  # a worker stops its pool on SIGTERM; the reaper SIGKILLs the rest
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
REAPER_ENABLED = True  # the tests of this module turn it off to see the parent-death signal alone

# The reaper: one line "+<pgid>" per group to watch, "-<pgid>" for a group already stopped; at end of
# file (pytest exited, however it exited) it SIGKILLs what is still registered and exits.
_REAPER = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""

# Runs first in every child: arm the parent-death signal (it survives exec), exit if the parent is
# already gone, then exec the real command (no preexec_fn: that is unsafe once pytest has threads).
_DIE_WITH_PARENT = f"""
import ctypes, os, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, {int(PARENT_DEATH_SIGNAL)}, 0, 0, 0)
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""

_lock = threading.RLock()
_processes: dict[int, subprocess.Popen[bytes]] = {}
_reaper: subprocess.Popen[bytes] | None = None
_previous_handlers: dict[int, Any] = {}


def _tell_reaper(line: str) -> None:
    """Send one line to the reaper, starting it first when needed (best effort)."""
    global _reaper
    if not REAPER_ENABLED:
        return
    if _reaper is None or _reaper.poll() is not None:
        _reaper = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
            [sys.executable, "-I", "-S", "-c", _REAPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # neither Ctrl-C nor a kill of pytest's group reaches it
        )
    assert _reaper.stdin is not None
    with contextlib.suppress(OSError):
        _reaper.stdin.write(f"{line}\n".encode())
        _reaper.stdin.flush()


def spawn(args: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    """subprocess.Popen in a new process group tied to this session (see the module docstring).

    Linux sends the parent-death signal when the thread that started the child exits: spawn from a
    thread that lives as long as the session (fixtures run in the main thread).
    """
    with _lock:
        shim = [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid())]
        process = subprocess.Popen([*shim, *args], start_new_session=True, **popen_kwargs)  # noqa: S603
        _processes[process.pid] = process
        _tell_reaper(f"+{process.pid}")
    return process


def kill_group(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the child's whole process group (nothing when it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def release(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a stopped child's group, reap the child and stop watching the group."""
    with _lock:
        kill_group(process)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if _processes.pop(process.pid, None) is not None:
            _tell_reaper(f"-{process.pid}")


def kill_all() -> None:
    """SIGKILL every registered group and reap the children; safe to call more than once."""
    with _lock:
        for process in list(_processes.values()):
            release(process)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Kill the session's groups, then let the signal do what it did before (exit, KeyboardInterrupt)."""
    kill_all()
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install() -> None:
    """Kill the groups at interpreter exit and on SIGTERM/SIGINT (main thread only; idempotent)."""
    if _previous_handlers or threading.current_thread() is not threading.main_thread():
        return
    atexit.register(kill_all)
    for signum in HANDLED_SIGNALS:
        _previous_handlers[signum] = signal.getsignal(signum)
        signal.signal(signum, _on_signal)


def uninstall() -> None:
    """Kill the groups, let the reaper go and give the signals back their previous handlers."""
    global _reaper
    kill_all()
    if _reaper is not None and _reaper.stdin is not None:
        with contextlib.suppress(OSError):
            _reaper.stdin.close()  # end of file: the reaper has nothing left to kill and exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            _reaper.wait(timeout=5)
        _reaper = None
    for signum, previous in list(_previous_handlers.items()):
        if signal.getsignal(signum) == _on_signal and previous is not None:
            signal.signal(signum, previous)
    _previous_handlers.clear()
