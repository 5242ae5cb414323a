"""Processes started by test fixtures die with the pytest session that started them, however it ends.

Each test runs an inner pytest on a tiny test file: it starts a long-running child through
tests.session_processes (the child starts a grandchild in its group, as a Celery worker starts its
pool), then the inner pytest ends normally, is sent SIGTERM or SIGINT, or is SIGKILLed. The child's
process group must then hold no live process.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.services import REPO_ROOT
from tests.session_processes import release, spawn

SLEEP = "import time; time.sleep(600)"
# the child: a grandchild in its process group (as a Celery worker's pool), then a long sleep
SLEEPER = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {SLEEP!r}]); {SLEEP}"
INNER = f'''
import os, sys, time
from pathlib import Path

from tests import session_processes
from tests.test_process_lifetime import group_members

SLEEPER = {SLEEPER!r}


def test_start_a_child_and_wait():
    """Start the child, wait for its grandchild, report the pids, then return or hang."""
    session_processes.REAPER_ENABLED = not os.environ.get("INNER_NO_REAPER")
    child = session_processes.spawn([sys.executable, "-c", SLEEPER])
    while len(group_members(child.pid)) < 2:
        time.sleep(0.05)
    reaper = session_processes._reaper.pid if session_processes._reaper else 0
    Path(os.environ["INNER_PIDFILE"]).write_text(f"{{child.pid}} {{reaper}}")
    if os.environ.get("INNER_MODE") != "return":
        time.sleep(600)
'''
# A real `gauntlet worker` on the embedded default (SQLite and the filesystem broker under tmp_path):
# nothing shared with the service tests' Postgres or Redis.
INNER_WORKER = """
import os, time
from pathlib import Path

from tests.conftest import FAST_RELIABILITY
from tests.services import WorkerProcess


def test_start_a_worker_and_wait(tmp_path):
    from app.migrate import upgrade
    from app.settings import Settings

    env = {key: value for key, value in os.environ.items() if not key.startswith("GAUNTLET_")}
    env |= {**FAST_RELIABILITY, "GAUNTLET_DATA_DIR": str(tmp_path / "data")}
    upgrade(Settings(data_dir=tmp_path / "data").resolved_database_url)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.wait_ready()
    Path(os.environ["INNER_PIDFILE"]).write_text(f"{worker.process.pid} 0")
    time.sleep(600)
"""
STARTUP_S, DEATH_S = 120.0, 20.0


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes whose process group is `pgid`, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _wait_until(condition: object, timeout: float) -> bool:
    """Poll condition() until it is true or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return bool(condition())  # type: ignore[operator]


class InnerRun:
    """An inner pytest on one test file, and the pids its test reported."""

    def __init__(self, tmp_path: Path, source: str, **env: str) -> None:
        """Write the test file and start pytest on it (itself tied to this session)."""
        test_file = tmp_path / "inner" / "test_inner.py"
        test_file.parent.mkdir(parents=True)
        test_file.write_text(source)
        self.pidfile = tmp_path / "pids.txt"
        self.log = tmp_path / "inner.log"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
        command += [
            "--rootdir",
            str(test_file.parent),
            "--basetemp",
            str(tmp_path / "basetemp"),
            str(test_file),
        ]
        with open(self.log, "wb") as log:
            self.process = spawn(
                command,
                cwd=REPO_ROOT,
                env={**os.environ, "INNER_PIDFILE": str(self.pidfile), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def pids(self) -> list[str]:
        """Wait for the reported 'child reaper [database]' line."""
        if not _wait_until(lambda: self.pidfile.exists() or self.process.poll() is not None, STARTUP_S):
            pytest.fail(f"the inner test never started its child:\n{self.log.read_text()[-3000:]}")
        if not self.pidfile.exists():
            pytest.fail(f"the inner pytest ended early:\n{self.log.read_text()[-3000:]}")
        return self.pidfile.read_text().split()

    def exit_code(self) -> int:
        """The inner pytest's return code (negative: the signal that ended it)."""
        return self.process.wait(timeout=DEATH_S)


@pytest.fixture
def inner(tmp_path: Path):  # noqa: ANN201
    """Start inner runs; whatever the test leaves is killed afterwards."""
    runs: list[InnerRun] = []
    groups: list[int] = []

    def start(source: str = INNER, **env: str) -> tuple[InnerRun, int]:
        run = InnerRun(tmp_path / str(len(runs)), source, **env)
        runs.append(run)
        child = int(run.pids()[0])
        groups.append(child)
        return run, child

    yield start
    for run in runs:
        release(run.process)
    for pgid in groups:
        for pid in group_members(pgid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_session_kills_the_child_group(inner, signum: int) -> None:  # noqa: ANN001
    """SIGTERM or Ctrl-C to pytest: its handlers kill the child and its grandchild, then pytest exits.

    The reaper is off, so the signal handlers alone must do it.
    """
    run, child = inner(INNER_NO_REAPER="1")
    assert len(group_members(child)) == 2
    os.kill(run.process.pid, signum)
    assert _wait_until(lambda: not group_members(child), DEATH_S), group_members(child)
    code = run.exit_code()
    assert code == (-signal.SIGTERM if signum == signal.SIGTERM else pytest.ExitCode.INTERRUPTED)


def test_a_session_that_ends_normally_kills_what_it_left_running(inner) -> None:  # noqa: ANN001
    """A test that starts a child and returns: pytest_unconfigure kills the group (the reaper is off)."""
    run, child = inner(INNER_MODE="return", INNER_NO_REAPER="1")
    assert run.exit_code() == 0, run.log.read_text()[-3000:]
    assert not group_members(child)


def test_a_sigkilled_session_is_reaped_grandchildren_included(inner) -> None:  # noqa: ANN001
    """SIGKILL to pytest runs none of its code: the reaper kills the whole group and exits."""
    run, child = inner()
    reaper = int(run.pids()[1])
    assert reaper and _alive(reaper) and len(group_members(child)) == 2
    os.kill(run.process.pid, signal.SIGKILL)
    assert run.exit_code() == -signal.SIGKILL
    assert _wait_until(lambda: not group_members(child), DEATH_S), group_members(child)
    assert _wait_until(lambda: not _alive(reaper), DEATH_S)


def test_the_parent_death_signal_alone_stops_the_child(inner) -> None:  # noqa: ANN001
    """Without the reaper, a SIGKILLed pytest's child still gets its parent-death signal and exits."""
    run, child = inner(INNER_NO_REAPER="1")
    assert run.pids()[1] == "0" and _alive(child)
    os.kill(run.process.pid, signal.SIGKILL)
    assert run.exit_code() == -signal.SIGKILL
    assert _wait_until(lambda: not _alive(child), DEATH_S)


@pytest.mark.slow
def test_a_sigkilled_session_takes_its_celery_worker_and_pool_along(inner) -> None:  # noqa: ANN001
    """A real `gauntlet worker` started through WorkerProcess: main process and pool die with pytest."""
    run, worker = inner(INNER_WORKER)
    assert _wait_until(lambda: len(group_members(worker)) >= 2, DEATH_S)  # the main process and its pool
    os.kill(run.process.pid, signal.SIGKILL)
    assert run.exit_code() == -signal.SIGKILL
    assert _wait_until(lambda: not group_members(worker), DEATH_S), group_members(worker)
