"""Small HTTP helpers for service tests."""

import io
import time

import numpy as np
from fastapi.testclient import TestClient

TERMINAL = {"succeeded", "failed", "cancelled"}


def upload_onnx(api: TestClient, headers: dict, data: bytes, name: str = "digits-cnn", **fields: str) -> dict:
    """Upload an ONNX model for 1x8x8 inputs and 10 classes."""
    form = {"name": name, "format": "onnx", "input_shape": "[1, 8, 8]", "num_classes": "10", **fields}
    response = api.post("/v1/models", headers=headers, files={"file": ("model.onnx", data)}, data=form)
    assert response.status_code == 202, response.text
    return response.json()


def wait_for(api: TestClient, path: str, headers: dict, done: set[str], timeout: float = 120.0) -> dict:
    """Poll until the resource's status is in `done`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.get(path, headers=headers).json()
        if body["status"] in done:
            return body
        time.sleep(0.2)
    raise AssertionError(f"{path} still {body['status']} after {timeout} s: {body}")


def ready_model(api: TestClient, headers: dict, data: bytes) -> dict:
    """Upload a model and wait for it to be ready."""
    model = upload_onnx(api, headers, data)
    model = wait_for(api, f"/v1/models/{model['id']}", headers, {"ready", "invalid"})
    assert model["status"] == "ready", model
    return model


def evasion_spec(model_id: str, attacks: list[dict], max_samples: int = 100, **extra: object) -> dict:
    """An evasion job spec on the held-out digits."""
    return {
        "kind": "evasion",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": {"attacks": attacks, "max_samples": max_samples, "batch_size": 64},
        **extra,
    }


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """Arrays as an .npz file."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def run(api: TestClient, headers: dict, spec: dict, timeout: float = 600) -> dict:
    """Submit a job and wait for it to end."""
    response = api.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 202, response.text
    return wait_for(api, f"/v1/jobs/{response.json()['id']}", headers, TERMINAL, timeout=timeout)


def wait_for_progress(api: TestClient, headers: dict, job_id: str) -> None:
    """Wait until the job reports some progress (it is inside the engine)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if api.get(f"/v1/jobs/{job_id}", headers=headers).json()["progress"] > 0.001:
            return
        time.sleep(0.2)
    raise AssertionError("the job never made progress")


def derived_of(api: TestClient, headers: dict, job_id: str) -> list[dict]:
    """The models a job registered."""
    return [
        m for m in api.get("/v1/models", headers=headers).json()["items"] if m.get("source_job_id") == job_id
    ]


def artifacts_of(api: TestClient, headers: dict, job_id: str) -> list[dict]:
    """A job's artifacts."""
    return api.get(f"/v1/jobs/{job_id}/artifacts", headers=headers).json()["items"]


def download(api: TestClient, headers: dict, artifact: dict) -> bytes:
    """An artifact's bytes."""
    return api.get(artifact["download_url"], headers=headers).content


# Report keys that differ between two runs of the same spec and seed: wall-clock times and the run's ids.
VOLATILE = {"job_id", "generated_at", "seconds", "derived_model_ids", "id", "versions"}


def measured(value: object) -> object:
    """A report (or any part of one) without wall-clock seconds and the ids of the run."""
    if isinstance(value, dict):
        return {key: measured(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [measured(item) for item in value]
    return value
