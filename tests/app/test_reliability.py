"""Reliability: a worker killed mid-job and a broker that lost its data cost time, never a job."""

import os
import time

import pytest
import redis
from fastapi.testclient import TestClient

from tests.app.helpers import TERMINAL, evasion_spec, ready_model, wait_for
from tests.conftest import ServiceEnvironment, require_services
from tests.services import REDIS_URL, WorkerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]
# Flushed by the tests: a database of its own (GAUNTLET_TEST_RELIABILITY_REDIS_URL, by default 10).
ISOLATED_REDIS_URL = os.environ.get(
    "GAUNTLET_TEST_RELIABILITY_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + "/10"
)


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> ServiceEnvironment:
    """Its own database and Redis database, so no other test's worker takes these jobs."""
    require_services()
    environment = ServiceEnvironment(tmp_path_factory.mktemp("reliability"), ISOLATED_REDIS_URL)
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def client(environment):
    from app.main import create_app

    with TestClient(create_app(environment.settings()), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def headers(client):
    from app.auth import create_key
    from app.db import session_scope

    with session_scope(client.app.state.session_factory) as session:
        return {"Authorization": f"Bearer {create_key(session, 'reliability')}"}


@pytest.fixture()
def workers(environment, tmp_path):
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(environment.env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def model(client, headers, digits_onnx, environment, tmp_path_factory):
    worker = WorkerProcess(environment.env, tmp_path_factory.mktemp("validation") / "worker.log")
    try:
        worker.wait_ready()
        return ready_model(client, headers, digits_onnx)
    finally:
        worker.stop()


def test_a_worker_killed_mid_job_leaves_the_job_to_be_finished_after_restart(client, headers, model, workers):
    first = workers()
    attack = {"name": "pgd", "norm": "linf", "eps": [0.1, 0.2], "steps": 300}
    job = client.post(
        "/v1/jobs", headers=headers, json=evasion_spec(model["id"], [attack], max_samples=297)
    ).json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job['id']}", headers=headers).json()
        if job["status"] == "running" and job["progress"] > 0.05:
            break
        time.sleep(0.1)
    assert job["status"] == "running", job
    first.kill()
    time.sleep(1)
    stuck = client.get(f"/v1/jobs/{job['id']}", headers=headers).json()
    assert stuck["status"] == "running" and stuck["progress"] < 1.0

    workers()
    final = wait_for(client, f"/v1/jobs/{job['id']}", headers, TERMINAL, timeout=300)
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    report = client.get(f"/v1/jobs/{job['id']}/report", headers=headers).json()
    assert report["n_samples"] == 297


def test_jobs_queued_while_redis_lost_all_its_data_still_complete(client, headers, model, workers):
    attack = {"name": "fgsm", "norm": "linf", "eps": [0.1]}
    jobs = [
        client.post(
            "/v1/jobs", headers=headers, json=evasion_spec(model["id"], [attack], max_samples=20)
        ).json()
        for _ in range(3)
    ]
    broker = redis.Redis.from_url(ISOLATED_REDIS_URL)
    assert broker.llen("gpu") == 3
    broker.flushdb()
    assert broker.llen("gpu") == 0

    workers()
    for job in jobs:
        final = wait_for(client, f"/v1/jobs/{job['id']}", headers, TERMINAL, timeout=120)
        assert final["status"] == "succeeded", final
        assert final["attempts"] == 1
