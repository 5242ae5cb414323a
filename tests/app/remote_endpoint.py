"""A remote prediction endpoint on loopback (a linear classifier), registered as a ready remote model."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from fastapi.testclient import TestClient

from tests.app.helpers import wait_for


class LinearEndpoint(BaseHTTPRequestHandler):
    """A remote linear classifier: enough to be a ready model with no activations to read."""

    weights = np.random.default_rng(0).normal(size=(10, 64))

    def do_POST(self) -> None:
        """Logits of the posted inputs."""
        x = np.asarray(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"])
        body = json.dumps({"logits": (x.reshape(len(x), -1) @ self.weights.T).tolist()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@contextmanager
def remote_linear_model(api: TestClient, headers: dict) -> Iterator[dict]:
    """Serve LinearEndpoint, register it as a remote model of 1x8x8 inputs and 10 classes, yield it ready."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), LinearEndpoint)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/predict"
        body = {"name": "remote", "endpoint_url": url, "input_shape": [1, 8, 8], "num_classes": 10}
        response = api.post("/v1/models", headers=headers, json=body)
        assert response.status_code == 202, response.text
        path = f"/v1/models/{response.json()['id']}"
        model = wait_for(api, path, headers, {"ready", "invalid"}, timeout=60)
        assert model["status"] == "ready", model
        yield model
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
