"""Real Postgres, Redis and live worker processes for service tests.

Outside CI a missing service skips the tests that need it; with CI=true it fails them.
"""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.session_processes import kill_group, release, spawn

POSTGRES_ADMIN_URL = os.environ.get(
    "GAUNTLET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("GAUNTLET_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _reachable(url: str, default_port: int) -> bool:
    """Whether a TCP connection to the URL's host and port succeeds."""
    parsed = urlparse(url.replace("+psycopg", ""))
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    """Skip (locally) or fail (in CI) when a service is not reachable."""
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}; CI needs the real service")
    pytest.skip(message)


def create_database() -> str:
    """Create a fresh, uniquely named Postgres database and return its URL."""
    import sqlalchemy as sa

    name = f"gauntlet_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    """Drop a database created by create_database."""
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class WorkerProcess:
    """A live `gauntlet worker` in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.process = spawn(  # its own process group, tied to this pytest session
            [sys.executable, "-m", "gauntlet_cli", "worker", "--log-level", "INFO", *extra_args],
            env=env,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait for Celery's 'ready' line in the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in time:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crashed machine would."""
        release(self.process)

    def stop(self, grace: float = 20.0) -> None:
        """Stop gracefully, then forcefully (what is left of the group too)."""
        stop_all([self], grace)


def stop_all(workers: Sequence[WorkerProcess], grace: float = 10.0) -> None:
    """SIGTERM every worker at once, wait up to `grace` seconds in all, then kill what is left."""
    for worker in workers:
        if worker.process.poll() is None:
            kill_group(worker.process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        release(worker.process)
        worker._log.close()
