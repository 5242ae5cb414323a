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
