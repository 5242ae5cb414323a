"""Fixtures shared by the service tests: a fresh Postgres database, Redis, the API and live workers."""

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import (
    REDIS_URL,
    WorkerProcess,
    create_database,
    drop_database,
    require_service,
    stop_all,
)
from tests.session_processes import install, uninstall

FAST_RELIABILITY = {
    "GAUNTLET_PROGRESS_INTERVAL_S": "0.1",
    "GAUNTLET_HEARTBEAT_INTERVAL_S": "0.5",
    "GAUNTLET_STALE_AFTER_S": "4",
    "GAUNTLET_REQUEUE_AFTER_S": "3",
    "GAUNTLET_RECONCILE_INTERVAL_S": "1",
    "GAUNTLET_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
    "GAUNTLET_REMOTE_HOST_ALLOWLIST": '["127.0.0.1"]',
    "GAUNTLET_REMOTE_TIMEOUT_S": "3",
}


def pytest_configure(config: pytest.Config) -> None:
    """Tie every process a fixture starts to this session: its groups die on exit, SIGTERM and SIGINT."""
    install()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Kill whatever the session's fixtures started and left running."""
    uninstall()


@pytest.fixture(scope="session")
def digits_onnx() -> bytes:
    """A small CNN trained on builtin:digits-train, exported to ONNX with a dynamic batch."""
    import torch

    from worker.engine.training.classifier import train_digits_model

    buffer = io.BytesIO()
    torch.onnx.export(
        train_digits_model("small-cnn", epochs=15, seed=0),
        (torch.rand(1, 1, 8, 8),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return buffer.getvalue()


class ServiceEnvironment:
    """A fresh Postgres database and a Redis database, and the environment that points at them."""

    def __init__(self, data_dir: Path, redis_url: str) -> None:
        import redis

        from app.migrate import upgrade

        self.redis_url = redis_url
        redis.Redis.from_url(redis_url).flushdb()
        self.database_url = create_database()
        upgrade(self.database_url)
        self.env = {
            **os.environ,
            **FAST_RELIABILITY,
            "GAUNTLET_DATABASE_URL": self.database_url,
            "GAUNTLET_BROKER_URL": redis_url,
            "GAUNTLET_DATA_DIR": str(data_dir),
        }

    def settings(self):  # noqa: ANN201
        """Settings read from this environment."""
        from app.settings import Settings

        keys = {k: v for k, v in self.env.items() if k.startswith("GAUNTLET_")}
        previous = {k: os.environ.get(k) for k in keys}
        os.environ.update(keys)
        try:
            return Settings()
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def close(self) -> None:
        """Drop the database and empty the Redis database."""
        import redis

        drop_database(self.database_url)
        redis.Redis.from_url(self.redis_url).flushdb()


def require_services() -> None:
    """Postgres and Redis must be reachable (skip locally, fail in CI)."""
    require_service("Postgres", "postgresql://127.0.0.1:5432", 5432)
    require_service("Redis", REDIS_URL, 6379)


@pytest.fixture(scope="session")
def service_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceEnvironment]:
    """The shared environment of the service tests."""
    require_services()
    environment = ServiceEnvironment(tmp_path_factory.mktemp("gauntlet-data"), REDIS_URL)
    yield environment
    environment.close()


@pytest.fixture(scope="session")
def service_env(service_environment: ServiceEnvironment) -> dict[str, str]:
    """Environment variables for workers of the shared environment."""
    return service_environment.env


@pytest.fixture(scope="session")
def settings(service_environment: ServiceEnvironment):  # noqa: ANN201
    """Settings of the shared environment."""
    return service_environment.settings()


@pytest.fixture(scope="session")
def api(settings):  # noqa: ANN001, ANN201
    """A TestClient over the real app, on the test database and Redis."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="session")
def make_key(api) -> Callable[[str], dict[str, str]]:  # noqa: ANN001
    """Create a tenant key; returns the Authorization header for it."""
    from app.auth import create_key
    from app.db import session_scope

    def make(tenant: str) -> dict[str, str]:
        with session_scope(api.app.state.session_factory) as session:
            return {"Authorization": f"Bearer {create_key(session, tenant)}"}

    return make


@pytest.fixture(scope="session")
def start_worker(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Start live workers on demand; all are stopped at the end of the session.

    A module's k-th plain call gets the session's k-th shared worker (started when first needed, again if it
    died), so modules do not each pay a worker's start and idle workers do not pile up; a call with
    overrides or fresh=True starts a worker of its own.
    """
    started: list[WorkerProcess] = []
    shared: list[WorkerProcess] = []
    calls: dict[str, int] = {}
    log_dir: Path = tmp_path_factory.mktemp("worker-logs")

    def launch(env: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(env, log_dir / f"worker-{len(started)}.log")
        started.append(worker)
        worker.wait_ready()
        return worker

    def start(env_overrides: dict[str, str] | None = None, *, fresh: bool = False) -> WorkerProcess:
        if env_overrides or fresh:
            return launch({**service_env, **(env_overrides or {})})
        module = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[0]
        index = calls.get(module, 0)
        calls[module] = index + 1
        if index < len(shared) and shared[index].process.poll() is None:
            return shared[index]
        worker = launch(service_env)
        shared[index : index + 1] = [worker]
        return worker

    yield start
    stop_all(started)
