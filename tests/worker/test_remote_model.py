"""Tests for the remote-endpoint classifier against a tiny HTTP server on 127.0.0.1."""

import json
import math
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from worker import remote_model
from worker.engine.models.intake import ModelRejected
from worker.remote_model import RemoteClassifier, RemoteModelError, validate_remote

SHAPE = (2, 3)
CLASSES = 4
ALLOW = ["127.0.0.1"]


class Endpoint:
    """A linear numpy classifier served over HTTP, with routes that misbehave on purpose."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.weights = rng.normal(size=(CLASSES, math.prod(SHAPE)))
        self.bias = rng.normal(size=CLASSES)
        self.paths: list[str] = []
        self.batches: list[int] = []
        self.failures_left = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1).astype(np.float64) @ self.weights.T + self.bias

    def answer(self, path: str, x: np.ndarray) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one request."""
        logits = self.logits(x)
        ok = {"Content-Type": "application/json"}
        if path == "/flaky" and self.failures_left > 0:
            self.failures_left -= 1
            return 503, {}, b"busy"
        if path in ("/predict", "/flaky"):
            return 200, ok, json.dumps({"logits": logits.tolist()}).encode()
        if path == "/probabilities":
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            return 200, ok, json.dumps({"probabilities": probs.tolist()}).encode()
        if path == "/noisy":
            noisy = logits + np.random.default_rng().normal(size=logits.shape)
            return 200, ok, json.dumps({"logits": noisy.tolist()}).encode()
        if path == "/redirect":
            return 302, {"Location": "/predict"}, b""
        if path in ("/big", "/big-unsized"):
            pad = "x" * 100_000
            return 200, ok, json.dumps({"logits": logits.tolist(), "pad": pad}).encode()
        if path == "/slow":
            time.sleep(1.0)
            return 200, ok, json.dumps({"logits": logits.tolist()}).encode()
        bad = {
            "/garbage": b"<html>definitely not json",
            "/list": json.dumps(logits.tolist()).encode(),
            "/missing-key": json.dumps({"scores": logits.tolist()}).encode(),
            "/wrong-shape": json.dumps({"logits": logits[:, :-1].tolist()}).encode(),
            "/ragged": json.dumps({"logits": [[1.0], [1.0, 2.0]]}).encode(),
            "/nan": json.dumps({"logits": np.full(logits.shape, np.nan).tolist()}).encode(),
            "/strings": json.dumps({"logits": [["a"] * CLASSES] * len(x)}).encode(),
            "/bad-probabilities": json.dumps({"probabilities": np.full(logits.shape, 0.9).tolist()}).encode(),
        }
        if path in bad:
            return 200, ok, bad[path]
        return 500, {}, b"internal error"


def _handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            x = np.asarray(json.loads(self.rfile.read(length))["inputs"], dtype=np.float32)
            endpoint.paths.append(self.path)
            endpoint.batches.append(len(x))
            status, headers, body = endpoint.answer(self.path, x)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if self.path != "/big-unsized":  # HTTP/1.0 without a length: the body ends when we close
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def server() -> Iterator[Endpoint]:
    endpoint = Endpoint()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()
    endpoint.thread.join(timeout=5)


@pytest.fixture
def endpoint(server: Endpoint) -> Endpoint:
    server.paths.clear()
    server.batches.clear()
    server.failures_left = 0
    return server


def _classifier(endpoint: Endpoint, path: str = "/predict", **options: object) -> RemoteClassifier:
    options = {"allowlist": ALLOW, "backoff_s": 0.0, "timeout": 5.0, **options}
    return RemoteClassifier(endpoint.url(path), input_shape=SHAPE, num_classes=CLASSES, **options)


def _inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, *SHAPE)).astype(np.float32)


def test_splits_into_batches_counts_queries_and_matches_the_model(endpoint):
    x = _inputs(7)
    with _classifier(endpoint, max_batch=3) as model:
        out = model(x)
        assert model.queries == 7 and model.http_requests == 3 and model.output_kind == "logits"
        assert model(x[:0]).shape == (0, CLASSES) and model.queries == 7
    assert endpoint.batches == [3, 3, 1]
    assert out.dtype == np.float32 and out.shape == (7, CLASSES)
    np.testing.assert_allclose(out, endpoint.logits(x), rtol=1e-5, atol=1e-5)


def test_large_samples_shrink_the_request(endpoint):
    model = _classifier(endpoint, max_batch=256)
    assert model.max_batch == 256
    big = RemoteClassifier(
        endpoint.url("/predict"), input_shape=(3, 1024, 1024), num_classes=2, allowlist=ALLOW
    )
    assert big.max_batch == remote_model.MAX_VALUES_PER_REQUEST // (3 * 1024 * 1024)
    model.close()
    big.close()


def test_probabilities_become_log_probabilities(endpoint):
    x = _inputs(5)
    with _classifier(endpoint, "/probabilities") as model:
        out = model(x)
        assert model.output_kind == "probabilities"
    expected = endpoint.logits(x)
    np.testing.assert_array_equal(out.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(
        out - out.max(1, keepdims=True), expected - expected.max(1, keepdims=True), rtol=1e-4, atol=1e-4
    )


def test_retries_transient_503_then_succeeds(endpoint):
    endpoint.failures_left = 2
    with _classifier(endpoint, "/flaky", retries=3) as model:
        out = model(_inputs(4))
        assert model.http_requests == 3 and model.queries == 4
    assert out.shape == (4, CLASSES) and endpoint.paths == ["/flaky"] * 3


def test_gives_up_after_a_bounded_number_of_retries(endpoint):
    endpoint.failures_left = 100
    with _classifier(endpoint, "/flaky", retries=2) as model, pytest.raises(RemoteModelError) as caught:
        model(_inputs(2))
    assert caught.value.code == "remote_unreachable" and "503" in caught.value.message
    assert len(endpoint.paths) == 3 and model.queries == 0


def test_unreachable_port_is_remote_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = RemoteClassifier(
        f"http://127.0.0.1:{port}/",
        input_shape=SHAPE,
        num_classes=CLASSES,
        allowlist=ALLOW,
        retries=1,
        backoff_s=0.0,
        timeout=2.0,
    )
    with model, pytest.raises(RemoteModelError) as caught:
        model(_inputs(1))
    assert caught.value.code == "remote_unreachable" and model.http_requests == 2


def test_slow_endpoint_times_out(endpoint):
    with (
        _classifier(endpoint, "/slow", retries=0, timeout=0.2) as model,
        pytest.raises(RemoteModelError) as caught,
    ):
        model(_inputs(1))
    assert caught.value.code == "remote_unreachable"


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/garbage", "not valid JSON"),
        ("/list", "JSON object"),
        ("/missing-key", "neither"),
        ("/wrong-shape", f"expected [3, {CLASSES}]"),
        ("/ragged", "rectangular"),
        ("/nan", "non-finite"),
        ("/strings", "only numbers"),
        ("/bad-probabilities", "sum to 1"),
        ("/no-such-route", "HTTP 500"),
    ],
)
def test_malformed_answers_are_bad_responses_and_not_retried(endpoint, path, fragment):
    with _classifier(endpoint, path, retries=3) as model, pytest.raises(RemoteModelError) as caught:
        model(_inputs(3))
    assert caught.value.code == "remote_bad_response"
    assert fragment in caught.value.message, caught.value.message
    assert endpoint.paths == [path] and model.queries == 0


def test_redirects_are_refused_not_followed(endpoint):
    with _classifier(endpoint, "/redirect") as model, pytest.raises(RemoteModelError) as caught:
        model(_inputs(2))
    assert caught.value.code == "remote_bad_response" and "redirect" in caught.value.message
    assert endpoint.paths == ["/redirect"]


@pytest.mark.parametrize("path", ["/big", "/big-unsized"])
def test_oversized_answers_are_refused(endpoint, path):
    with (
        _classifier(endpoint, path, max_response_bytes=4096) as model,
        pytest.raises(RemoteModelError) as caught,
    ):
        model(_inputs(2))
    assert caught.value.code == "remote_bad_response" and "larger than" in caught.value.message
    with _classifier(endpoint, path) as model:  # the same answer fits the default limit
        assert model(_inputs(2)).shape == (2, CLASSES)


def test_host_not_on_the_allowlist_is_refused_before_any_request(endpoint):
    with pytest.raises(RemoteModelError) as caught:
        _classifier(endpoint, allowlist=["example.org", "127.0.0.2"])
    assert caught.value.code == "host_not_allowed"
    allowlist = list(ALLOW)
    model = _classifier(endpoint, allowlist=allowlist)
    allowlist.clear()  # the operator took the host off: checked again at call time
    with model, pytest.raises(RemoteModelError) as caught:
        model(_inputs(1))
    assert caught.value.code == "host_not_allowed" and endpoint.paths == []
    with pytest.raises(TypeError):
        _classifier(endpoint, allowlist="127.0.0.1")


def test_name_and_address_are_compared_as_written(endpoint):
    url = endpoint.url("/predict").replace("127.0.0.1", "localhost")
    with pytest.raises(RemoteModelError) as caught:
        RemoteClassifier(url, input_shape=SHAPE, num_classes=CLASSES, allowlist=ALLOW)
    assert caught.value.code == "host_not_allowed"


def test_inputs_of_the_wrong_shape_are_a_caller_error(endpoint):
    with _classifier(endpoint) as model, pytest.raises(ValueError, match="shape"):
        model(np.zeros((2, 6), dtype=np.float32))
    assert endpoint.paths == []


def test_validate_remote_accepts_a_working_endpoint(endpoint):
    report = validate_remote(endpoint.url("/predict"), SHAPE, CLASSES, (0.0, 1.0), ALLOW)
    assert report.white_box is False and report.max_abs_diff is None
    assert any("Black-box only" in note for note in report.notes)
    assert not any("deterministic" in note for note in report.notes)
    assert endpoint.batches == [1, 4]


def test_validate_remote_notes_probabilities_and_nondeterminism(endpoint):
    probs = validate_remote(endpoint.url("/probabilities"), SHAPE, CLASSES, (0.0, 1.0), ALLOW)
    assert any("probabilities" in note for note in probs.notes)
    noisy = validate_remote(endpoint.url("/noisy"), SHAPE, CLASSES, (0.0, 1.0), ALLOW)
    assert any("not deterministic" in note for note in noisy.notes)


@pytest.mark.parametrize(
    ("path", "allowlist", "code"),
    [
        ("/garbage", ALLOW, "remote_bad_response"),
        ("/wrong-shape", ALLOW, "remote_bad_response"),
        ("/predict", ["example.org"], "host_not_allowed"),
    ],
)
def test_validate_remote_rejects_with_a_code(endpoint, path, allowlist, code):
    with pytest.raises(ModelRejected) as caught:
        validate_remote(endpoint.url(path), SHAPE, CLASSES, (0.0, 1.0), allowlist)
    assert caught.value.code == code and caught.value.message


def test_a_remote_target_closes_the_clients_it_opened(endpoint):
    from worker.services.targets import RemoteTarget, Signature

    target = RemoteTarget(
        id="m",
        name="remote",
        signature=Signature(input_shape=tuple(SHAPE), num_classes=CLASSES, input_range=(0.0, 1.0)),
        url=endpoint.url("/predict"),
        allowlist=tuple(ALLOW),
    )
    assert not target.white_box and target.differentiable() is None
    classify = target.classifier()
    assert classify is not None
    np.testing.assert_allclose(classify(_inputs(2)), endpoint.logits(_inputs(2)), rtol=1e-5, atol=1e-5)
    (client,) = target._opened
    target.close()
    assert client._client.is_closed and target._opened == []
