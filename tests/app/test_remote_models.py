"""Remote prediction endpoints end to end: register, validate on a live worker, tenant scoping, limits."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from tests.app.helpers import evasion_spec, wait_for

pytestmark = pytest.mark.service
SHAPE, CLASSES = [1, 8, 8], 10


class _Handler(BaseHTTPRequestHandler):
    """/predict answers logits of a fixed linear model; /garbage answers HTML."""

    weights = np.random.default_rng(0).normal(size=(CLASSES, 64))

    def do_POST(self) -> None:
        x = np.asarray(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"])
        if self.path == "/predict":
            body = json.dumps({"logits": (x.reshape(len(x), -1) @ self.weights.T).tolist()}).encode()
        else:
            body = b"<html>oops</html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """Base URL of a classifier served on 127.0.0.1 (reachable by the worker subprocesses)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def carol(make_key, start_worker) -> dict:
    start_worker()
    return make_key("carol-remote")


def _register(api, headers: dict, url: str, **extra: object):
    body = {
        "name": "remote-digits",
        "endpoint_url": url,
        "input_shape": SHAPE,
        "num_classes": CLASSES,
        **extra,
    }
    return api.post("/v1/models", headers=headers, json=body)


@pytest.fixture(scope="module")
def remote_model(api, carol, endpoint) -> dict:
    response = _register(api, carol, f"{endpoint}/predict")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "validating" and response.json()["format"] == "remote"
    return wait_for(api, f"/v1/models/{response.json()['id']}", carol, {"ready", "invalid"}, timeout=60)


def test_a_working_endpoint_becomes_ready_black_box_only(remote_model, endpoint):
    assert remote_model["status"] == "ready", remote_model
    assert remote_model["white_box"] is False
    assert remote_model["endpoint_url"] == f"{endpoint}/predict"
    assert remote_model["intake"]["white_box"] is False and remote_model["intake"]["max_abs_diff"] is None
    assert any("Black-box only" in note for note in remote_model["intake"]["notes"])


def test_an_endpoint_answering_garbage_is_invalid_with_a_code(api, carol, endpoint):
    response = _register(api, carol, f"{endpoint}/garbage")
    assert response.status_code == 202, response.text
    model = wait_for(api, f"/v1/models/{response.json()['id']}", carol, {"ready", "invalid"}, timeout=60)
    assert model["status"] == "invalid" and model["invalid_code"] == "remote_bad_response", model
    assert "JSON" in model["invalid_reason"] and "Traceback" not in model["invalid_reason"]


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data", "http://localhost:9/predict"])
def test_a_host_off_the_allowlist_is_422_and_stores_nothing(api, carol, url):
    before = len(api.get("/v1/models", headers=carol).json()["items"])
    response = _register(api, carol, url)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "host_not_allowed"
    assert len(api.get("/v1/models", headers=carol).json()["items"]) == before


def test_a_gradient_attack_on_a_remote_model_is_422_needs_white_box(api, carol, remote_model):
    spec = evasion_spec(remote_model["id"], [{"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 5}])
    response = api.post("/v1/jobs", headers=carol, json=spec)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "needs_white_box"


def test_another_tenant_cannot_see_the_remote_model(api, make_key, remote_model):
    dave = make_key("dave-remote")
    path = f"/v1/models/{remote_model['id']}"
    assert api.get(path, headers=dave).status_code == 404
    assert api.delete(path, headers=dave).status_code == 404
    assert remote_model["id"] not in [m["id"] for m in api.get("/v1/models", headers=dave).json()["items"]]
