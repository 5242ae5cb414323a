"""Hostile models and webhooks on the real Postgres, Redis and a live worker.

A run-time memory bomb and a graph that runs for minutes end `invalid` with stable codes in bounded
time, each validated once, while a normal model and job on the same worker still finish; a webhook
receiver verifies every signature and sees the retries after it first answers 500.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.orm import ModelRecord
from app.webhooks import verify
from tests.app.helpers import TERMINAL, evasion_spec, ready_model, upload_onnx, wait_for
from tests.conftest import ServiceEnvironment, require_services
from tests.hostile_models import memory_bomb, slow_graph
from tests.services import REDIS_URL, WorkerProcess

pytestmark = [pytest.mark.service, pytest.mark.slow]
ISOLATED_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/13"
LIMITS = {
    "GAUNTLET_WORKER_MEMORY_LIMIT_BYTES": str(2 << 30),
    "GAUNTLET_VALIDATION_TIME_LIMIT_S": "15",  # the digits model validates in a few seconds
    "GAUNTLET_WEBHOOK_ALLOWED_ADDRESSES": '["127.0.0.1"]',
    "GAUNTLET_WEBHOOK_RETRY_BASE_S": "0.5",
}
FGSM = {"name": "fgsm", "norm": "linf", "eps": [0.1]}


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    require_services()
    environment = ServiceEnvironment(tmp_path_factory.mktemp("hardening"), ISOLATED_REDIS_URL)
    environment.env.update(LIMITS)
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
        return {"Authorization": f"Bearer {create_key(session, 'hardening')}"}


@pytest.fixture(scope="module")
def worker(environment, tmp_path_factory):
    worker = WorkerProcess(environment.env, tmp_path_factory.mktemp("hardening-worker") / "worker.log")
    worker.wait_ready()
    yield worker
    worker.stop()


def _attempts(client, model_id: str) -> int:
    with client.app.state.session_factory() as session:
        return session.scalar(select(ModelRecord.validation_attempts).where(ModelRecord.id == model_id))


def test_hostile_models_end_invalid_with_stable_codes_while_a_normal_job_finishes(
    client, headers, worker, digits_onnx
):
    bomb = upload_onnx(client, headers, memory_bomb(), name="memory-bomb")
    slow = upload_onnx(client, headers, slow_graph(), name="minutes-of-matmul")
    bomb = wait_for(client, f"/v1/models/{bomb['id']}", headers, {"ready", "invalid"}, timeout=180)
    assert (bomb["status"], bomb["invalid_code"]) == ("invalid", "resource_limit"), bomb
    assert "worker_memory_limit_bytes" in bomb["invalid_reason"]
    slow = wait_for(client, f"/v1/models/{slow['id']}", headers, {"ready", "invalid"}, timeout=180)
    assert (slow["status"], slow["invalid_code"]) == ("invalid", "validation_timeout"), slow
    # Each ran once: the reconciler (requeue after 3 s) never sent a second copy of a running validation.
    assert _attempts(client, bomb["id"]) == 1 and _attempts(client, slow["id"]) == 1
    log = worker.log_path.read_text()
    assert log.count(f"model {slow['id']}: attempt") == 1, log[-3000:]

    model = ready_model(client, headers, digits_onnx)
    job = client.post(
        "/v1/jobs", headers=headers, json=evasion_spec(model["id"], [FGSM], max_samples=40)
    ).json()
    job = wait_for(client, f"/v1/jobs/{job['id']}", headers, TERMINAL)
    assert job["status"] == "succeeded", job
    assert job["created_at"].endswith(("+00:00", "Z")) and model["created_at"].endswith(("+00:00", "Z"))


class _Receiver(BaseHTTPRequestHandler):
    """Records every delivery; answers 500 to the first one and 200 afterwards."""

    received: list[tuple[dict[str, str], str]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(500 if len(self.received) == 1 else 200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture()
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_webhook_receiver_verifies_the_signature_and_sees_retries(
    client, headers, worker, receiver, digits_onnx
):
    secret = client.post("/v1/webhook-secret", headers=headers)
    assert secret.status_code == 201 and secret.json()["secret"].startswith("whsec_")
    secret = secret.json()["secret"]
    model = ready_model(client, headers, digits_onnx)
    url = f"http://127.0.0.1:{receiver.server_port}/hooks/gauntlet?x=1"
    spec = evasion_spec(model["id"], [FGSM], max_samples=20, callback_url=url)
    job = client.post("/v1/jobs", headers=headers, json=spec).json()
    job = wait_for(client, f"/v1/jobs/{job['id']}", headers, TERMINAL)
    assert job["status"] == "succeeded", job
    deadline = time.monotonic() + 60
    while len(_Receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_Receiver.received) == 2, _Receiver.received
    ids = set()
    for headers_seen, body in _Receiver.received:
        timestamp = int(headers_seen["webhook-timestamp"])
        assert verify(secret, headers_seen["webhook-id"], timestamp, body, headers_seen["webhook-signature"])
        assert not verify(
            secret, headers_seen["webhook-id"], timestamp + 1, body, headers_seen["webhook-signature"]
        )
        assert headers_seen["host"] == f"127.0.0.1:{receiver.server_port}"
        ids.add(headers_seen["webhook-id"])
        payload = json.loads(body)
        assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
    assert len(ids) == 1  # retries carry the same message id
    deliveries = wait_for_delivered(client, headers, job["id"])
    assert deliveries[0]["attempts"] == 2 and deliveries[0]["last_status_code"] == 200
    assert deliveries[0]["id"] in ids and deliveries[0]["url"] == url


def wait_for_delivered(client, headers, job_id: str) -> list[dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = client.get(f"/v1/jobs/{job_id}/deliveries", headers=headers).json()["items"]
        if items and items[0]["status"] == "delivered":
            return items
        time.sleep(0.2)
    raise AssertionError(f"no delivered webhook for {job_id}: {items}")


def test_credentials_in_a_callback_url_are_refused(client, headers, worker, digits_onnx):
    model = ready_model(client, headers, digits_onnx)
    spec = evasion_spec(model["id"], [FGSM], callback_url="http://user:secret@127.0.0.1:9/hook")
    response = client.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 422 and response.json()["error"]["code"] == "callback_credentials"
