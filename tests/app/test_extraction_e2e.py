"""Extraction end to end over HTTP with real Postgres, Redis and a live worker."""

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from app.schemas.reports import REPORT_ADAPTER
from tests.app.helpers import TERMINAL, evasion_spec, npz_bytes, ready_model, wait_for
from worker.engine.datasets import load_builtin

SMALL = {"name": "pgd", "norm": "linf", "eps": [0.2], "steps": 5}


def extraction_spec(model_id: str, **params: object) -> dict:
    """A small extraction job on the held-out digits."""
    base = {
        "query_dataset_id": "builtin:digits-train",
        "budgets": [100, 200],
        "attacks": [{"name": "knockoff", "strategy": "random"}],
        "surrogate": {"architecture": "victim", "epochs": 5, "min_steps": 0},
        "defenses": [{"name": "reverse_sigmoid"}],
        "detection": [{"name": "prada"}],
        "transfer": SMALL,
        "max_samples": 100,
    }
    return {
        "kind": "extraction",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": base | params,
    }


class _Victim(BaseHTTPRequestHandler):
    """A linear digits classifier counting samples; `mode` makes it slow, redirect, or answer garbage or 7
    classes."""

    weights = np.random.default_rng(0).normal(size=(10, 64))
    mode = "good"
    samples = 0

    def do_POST(self) -> None:
        x = np.asarray(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"])
        logits = x.reshape(len(x), -1) @ self.weights.T
        type(self).samples += len(x)
        if self.mode == "slow":
            time.sleep(4)  # past GAUNTLET_REMOTE_TIMEOUT_S (3 s in the tests), on every retry
        if self.mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.mode == "garbage":
            body = b"<html>oops</html>"
        elif self.mode == "seven":
            body = json.dumps({"logits": logits[:, :7].tolist()}).encode()
        else:
            body = json.dumps({"logits": logits.tolist()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_app_catalog_rules_match_what_the_engine_builds():
    from app.schemas.resources import ARCHITECTURE_NAMES
    from app.services.kinds.extraction import architecture_misfit
    from worker.engine.training.trainable import build_trainable

    for shape in [(1, 8, 8), (3, 16, 16), (64,), (1, 6, 6), (3, 1, 1), (1, 2, 2)]:
        for name in ARCHITECTURE_NAMES:
            try:
                build_trainable(
                    architecture=name,
                    onnx_bytes=None,
                    safetensors_bytes=None,
                    input_shape=shape,
                    num_classes=3,
                    init="random",
                    seed=0,
                )
                builds = True
            except (ValueError, RuntimeError):
                builds = False
            assert (architecture_misfit(name, shape) is None) == builds, (name, shape)


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("extraction-tenant")


@pytest.fixture(scope="module")
def victim(api, tenant, digits_onnx) -> dict:
    return ready_model(api, tenant, digits_onnx)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Victim)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def remote(api, tenant, endpoint) -> dict:
    _Victim.mode = "good"
    body = {"name": "remote-victim", "endpoint_url": endpoint, "input_shape": [1, 8, 8], "num_classes": 10}
    response = api.post("/v1/models", headers=tenant, json=body)
    assert response.status_code == 202, response.text
    model = wait_for(api, f"/v1/models/{response.json()['id']}", tenant, {"ready", "invalid"}, timeout=60)
    assert model["status"] == "ready", model
    return model


def derived_of(api, headers: dict, job_id: str) -> list[dict]:
    return [
        m for m in api.get("/v1/models", headers=headers).json()["items"] if m.get("source_job_id") == job_id
    ]


def run(api, headers: dict, spec: dict, timeout: float = 300) -> dict:
    response = api.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 202, response.text
    return wait_for(api, f"/v1/jobs/{response.json()['id']}", headers, TERMINAL, timeout=timeout)


@pytest.mark.service
def test_extraction_job_end_to_end_and_its_surrogate_attacked_by_id(api, tenant, victim, digits_onnx):
    from worker.engine.models.intake import OnnxRuntimeClassifier

    job = run(api, tenant, extraction_spec(victim["id"]))
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    rows = report["attacks"][0]["rows"]
    assert [row["defense"] for row in rows] == ["none", "reverse_sigmoid", "label_only"]
    assert all(row["queries"] <= 200 for row in rows) and rows[-1]["sees"] == "label"
    assert report["defenses"][-1]["implicit"] and report["detection"][0]["benign"]["n_queries"] == 100
    assert report["transfer"]["white_box"][0]["attack_success_rate"] > 0.5
    assert len(report["derived_model_ids"]) == 1 == len(job["summary"]["derived_model_ids"])

    surrogate = api.get(f"/v1/models/{report['derived_model_ids'][0]}", headers=tenant).json()
    assert surrogate["status"] == "ready" and surrogate["source_job_id"] == job["id"]
    assert surrogate["derived_from"] == victim["id"] and surrogate["white_box"] is True

    artifacts = api.get(f"/v1/jobs/{job['id']}/artifacts", headers=tenant).json()["items"]
    kinds = sorted(a["kind"] for a in artifacts)
    assert kinds == ["model_onnx", "query_log", "report_html"]
    onnx = api.get(
        next(a for a in artifacts if a["kind"] == "model_onnx")["download_url"], headers=tenant
    ).content
    x = load_builtin("digits-test").x[:100]
    mine = OnnxRuntimeClassifier(onnx)(x).argmax(1)
    theirs = OnnxRuntimeClassifier(digits_onnx)(x).argmax(1)
    assert rows[0]["results"][-1]["fidelity"] == pytest.approx(float((mine == theirs).mean()))
    log = np.load(
        io.BytesIO(
            api.get(
                next(a for a in artifacts if a["kind"] == "query_log")["download_url"], headers=tenant
            ).content
        ),
        allow_pickle=False,
    )
    assert log["x"].shape == (200, 1, 8, 8) and log["outputs"].shape == (200, 10)
    html = api.get(f"/v1/jobs/{job['id']}/report.html", headers=tenant).text
    assert "<svg" in html and "Fidelity against queries" in html

    attack = run(api, tenant, evasion_spec(surrogate["id"], [SMALL], max_samples=50))
    assert attack["status"] == "succeeded", attack


@pytest.mark.service
def test_remote_victim_every_query_counted_and_synthetic_pool(api, tenant, remote):
    _Victim.mode, _Victim.samples = "good", 0
    spec = extraction_spec(
        remote["id"],
        query_dataset_id="synthetic:uniform",
        budgets=[150],
        defenses=[],
        detection=[],
        surrogate={"architecture": "mlp", "epochs": 5},
    )
    job = run(api, tenant, spec)
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    queries = sum(row["queries"] for row in report["attacks"][0]["rows"])
    transfer = sum(row["results"][-1]["transfer"][0]["n_attacked"] for row in report["attacks"][0]["rows"])
    assert report["transfer"]["white_box"] is None and queries == 300
    # Split by defense row (none, label-only): each shard measures the victim on the evaluation set once
    # (evaluator queries); the merge reuses a shard's answers.
    assert len(job["shards"]) == 2
    assert _Victim.samples == report["n_samples"] * 2 + queries + transfer


@pytest.mark.service
@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("garbage", "remote_bad_response"),
        ("seven", "remote_bad_response"),
        ("redirect", "remote_bad_response"),
        ("slow", "remote_unreachable"),
    ],
)
def test_a_remote_victim_that_misbehaves_fails_the_job_and_registers_nothing(api, tenant, remote, mode, code):
    _Victim.mode = mode
    try:
        spec = extraction_spec(remote["id"], budgets=[100], surrogate={"architecture": "mlp", "epochs": 2})
        job = run(api, tenant, spec)
    finally:
        _Victim.mode = "good"
    assert job["status"] == "failed" and job["error"]["code"] == code, job
    assert "Traceback" not in job["error"]["message"]
    assert derived_of(api, tenant, job["id"]) == []
    assert api.get(f"/v1/jobs/{job['id']}/artifacts", headers=tenant).json()["items"] == []


@pytest.mark.service
def test_bad_extraction_input_is_refused_at_submission(api, tenant, victim, remote, make_key):
    def refused(spec: dict, status: int = 422) -> str:
        response = api.post("/v1/jobs", headers=tenant, json=spec)
        assert response.status_code == status, response.text
        return response.json()["error"]["code"]

    assert refused(
        extraction_spec(victim["id"], query_dataset_id="builtin:digits-test", budgets=[100, 500])
    ) == ("budget_above_pool")
    assert refused(extraction_spec(victim["id"], budgets=[200, 100])) == "invalid_request"
    assert refused(extraction_spec(victim["id"], budgets=[100, 2_000_000])) == "invalid_request"
    assert refused(extraction_spec(victim["id"], unknown_field=1)) == "invalid_request"
    assert refused(extraction_spec(remote["id"])) == "surrogate_needs_onnx_victim"
    assert (
        refused(extraction_spec(victim["id"], query_dataset_id="synthetic:gaussian")) == "dataset_not_found"
    )
    assert (
        refused(extraction_spec(victim["id"], transfer={"name": "pgd", "eps": [5.0]})) == "eps_out_of_range"
    )

    rng = np.random.default_rng(0)
    small = api.post(
        "/v1/datasets",
        headers=tenant,
        data={"name": "4x4"},
        files={
            "file": (
                "d.npz",
                npz_bytes(
                    x=rng.uniform(size=(300, 1, 4, 4)).astype(np.float32), y=np.zeros(300, dtype=np.int64)
                ),
            )
        },
    ).json()
    assert refused(extraction_spec(victim["id"], query_dataset_id=small["id"])) == "pool_shape_mismatch"
    loud = api.post(
        "/v1/datasets",
        headers=tenant,
        data={"name": "0-to-2"},
        files={
            "file": (
                "d.npz",
                npz_bytes(
                    x=rng.uniform(0, 2, size=(300, 1, 8, 8)).astype(np.float32),
                    y=np.zeros(300, dtype=np.int64),
                ),
            )
        },
    ).json()
    assert refused(extraction_spec(victim["id"], query_dataset_id=loud["id"])) == "pool_out_of_range"

    other = make_key("extraction-other-tenant")
    theirs = api.post(
        "/v1/datasets",
        headers=other,
        data={"name": "theirs"},
        files={
            "file": (
                "d.npz",
                npz_bytes(
                    x=rng.uniform(size=(300, 1, 8, 8)).astype(np.float32), y=np.zeros(300, dtype=np.int64)
                ),
            )
        },
    ).json()
    assert refused(extraction_spec(victim["id"], query_dataset_id=theirs["id"]), status=404) == "not_found"


@pytest.mark.service
def test_cancel_mid_run_registers_nothing(api, tenant, victim):
    spec = extraction_spec(
        victim["id"], budgets=[1000, 1500], surrogate={"architecture": "victim", "epochs": 300}
    )
    job = api.post("/v1/jobs", headers=tenant, json=spec).json()
    running = wait_for(api, f"/v1/jobs/{job['id']}", tenant, {"running"} | TERMINAL, timeout=120)
    assert running["status"] == "running"
    wait_for_progress(api, tenant, job["id"])
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant).status_code == 202
    final = wait_for(api, f"/v1/jobs/{job['id']}", tenant, TERMINAL, timeout=120)
    assert final["status"] == "cancelled" and final["progress"] < 1.0
    assert derived_of(api, tenant, job["id"]) == []
    assert api.get(f"/v1/jobs/{job['id']}/artifacts", headers=tenant).json()["items"] == []


def wait_for_progress(api, headers: dict, job_id: str) -> None:
    """Wait until the job reports some progress (it is inside the engine)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if api.get(f"/v1/jobs/{job_id}", headers=headers).json()["progress"] > 0.01:
            return
        time.sleep(0.2)
    raise AssertionError("the job never made progress")
