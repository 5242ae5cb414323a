"""A live `gauntlet api` process for the client's tests, and a way to run the `gauntlet` command."""

import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.services import REPO_ROOT
from tests.session_processes import kill_group, release, spawn


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Wait until the API answers /readyz with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API was not ready in time:\n{log.read_text()[-3000:]}")


class LiveApi:
    """`gauntlet api` on a free loopback port, in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = open(log, "ab")  # noqa: SIM115
        self.process = spawn(  # its own process group, tied to this pytest session
            [sys.executable, "-m", "gauntlet_cli", "api", "--port", self.url.rsplit(":", 1)[1]],
            env=env,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_ready(self.url, self.process, log)

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL what is left."""
        if self.process.poll() is None:
            kill_group(self.process, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        release(self.process)
        self._log.close()


def gauntlet(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `gauntlet` command to its end and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "gauntlet_cli", *args],
        env=env,
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
