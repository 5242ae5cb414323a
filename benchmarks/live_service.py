"""A live Gauntlet service for benchmarks: a fresh Postgres database, a Redis database, API and workers.

Every process it starts runs in its own process group and is stopped (the group SIGTERMed, then
SIGKILLed) when the service closes; nothing else is touched. The Redis database is flushed at start
and at close: give one nobody else uses.
"""

import contextlib
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get(
    "GAUNTLET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TERMINAL = {"succeeded", "failed", "cancelled"}


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM a process group started here, then SIGKILL what is left of it (pool children too)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


class LiveService:
    """Postgres database, Redis database, API processes and worker processes, all started here."""

    def __init__(self, redis_url: str, env: dict[str, str] | None = None) -> None:
        import redis
        import sqlalchemy as sa

        from app.migrate import upgrade

        self.redis_url = redis_url
        redis.Redis.from_url(redis_url).flushdb()
        self.database = f"gauntlet_bench_{secrets.token_hex(4)}"
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()
        self.database_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.database
        upgrade(self.database_url)
        self.folder = Path(tempfile.mkdtemp(prefix="gauntlet-bench-"))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GAUNTLET_", "OMP_"))}
        self.env = base | {
            "GAUNTLET_DATABASE_URL": self.database_url,
            "GAUNTLET_BROKER_URL": redis_url,
            "GAUNTLET_DATA_DIR": str(self.folder / "data"),
            "GAUNTLET_PROGRESS_INTERVAL_S": "1",
            **(env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `gauntlet <args>` in its own process group, logging to the service folder."""
        with open(self.folder / f"{name}.log", "ab") as log:
            process = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "gauntlet_cli", *args],
                env={**self.env, **(env or {})},
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        """A process's log so far."""
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def start_api(self, workers: int = 1) -> str:
        """Start `gauntlet api --workers N` on a free port (stopping a running one); its URL."""
        self.stop("api")
        port = free_port()
        process = self._spawn("api", ["api", "--port", str(port), "--workers", str(workers)])
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited:\n{self.log('api')[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self.url
            time.sleep(0.3)
        raise RuntimeError(f"the API was not ready:\n{self.log('api')[-3000:]}")

    def start_worker(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Start `gauntlet worker <args>` and wait for its 'ready' line."""
        process = self._spawn(name, ["worker", "--hostname", f"{name}@%h", *args], env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker {name} exited:\n{self.log(name)[-3000:]}")
            if " ready." in self.log(name):
                return
            time.sleep(0.3)
        raise RuntimeError(f"worker {name} was not ready:\n{self.log(name)[-3000:]}")

    def stop(self, *names: str) -> None:
        """Stop the named processes (all when none is named)."""
        for name in names or list(self.processes):
            process = self.processes.pop(name, None)
            if process is not None:
                stop_group(process)

    def key(self, tenant: str) -> dict[str, str]:
        """A new API key of a tenant, as the Authorization header."""
        from app.auth import create_key
        from app.db import make_engine, make_session_factory, session_scope
        from app.settings import Settings

        engine = make_engine(Settings(database_url=self.database_url))
        try:
            with session_scope(make_session_factory(engine)) as session:
                return {"Authorization": f"Bearer {create_key(session, tenant)}"}
        finally:
            engine.dispose()

    def close(self) -> None:
        """Stop everything started here, drop the database, flush the Redis database, remove the logs."""
        import redis
        import sqlalchemy as sa

        self.stop()
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        admin.dispose()
        redis.Redis.from_url(self.redis_url).flushdb()
        shutil.rmtree(self.folder, ignore_errors=True)


def wait_status(client: httpx.Client, path: str, done: set[str], timeout: float) -> dict[str, Any]:
    """Poll a resource until its status is in `done`."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if body["status"] in done:
            return body
        time.sleep(0.2)
    raise RuntimeError(f"{path} still {body.get('status')} after {timeout:.0f} s: {body}")


def upload_model(client: httpx.Client, onnx: bytes, name: str, input_shape: list[int], classes: int) -> str:
    """Upload an ONNX model like a user and wait until it is ready; its id."""
    form = {"name": name, "format": "onnx", "input_shape": str(input_shape), "num_classes": str(classes)}
    answer = client.post("/v1/models", files={"file": ("model.onnx", onnx)}, data=form)
    answer.raise_for_status()
    model = wait_status(client, f"/v1/models/{answer.json()['id']}", {"ready", "invalid"}, 1800)
    if model["status"] != "ready":
        raise RuntimeError(f"model not ready: {model}")
    return str(model["id"])


def upload_dataset(client: httpx.Client, name: str, **arrays: Any) -> str:
    """Upload arrays as an .npz dataset; its id."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    answer = client.post("/v1/datasets", data={"name": name}, files={"file": ("d.npz", buffer.getvalue())})
    answer.raise_for_status()
    return str(answer.json()["id"])


def run_job(
    client: httpx.Client, spec: dict[str, Any], timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Submit a job, wait for its end; the final view and the report."""
    answer = client.post("/v1/jobs", json=spec)
    answer.raise_for_status()
    final = wait_status(client, f"/v1/jobs/{answer.json()['id']}", TERMINAL, timeout)
    if final["status"] != "succeeded":
        raise RuntimeError(f"job ended {final['status']}: {final.get('error')}")
    return final, client.get(f"/v1/jobs/{final['id']}/report").json()
