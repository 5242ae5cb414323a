"""An ONNX upload may leave out input_shape and num_classes when its graph states them (live worker)."""

import io

import pytest
import torch

from tests.app.helpers import wait_for

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("interface-tenant")


def _upload(api, headers: dict, data: bytes, **fields: str):
    form = {"name": "no-shape", "format": "onnx", **fields}
    return api.post("/v1/models", headers=headers, files={"file": ("model.onnx", data)}, data=form)


def test_the_graph_states_the_interface_and_validation_fills_it(api, tenant, digits_onnx):
    created = _upload(api, tenant, digits_onnx)
    assert created.status_code == 202, created.text
    model = wait_for(api, f"/v1/models/{created.json()['id']}", tenant, {"ready", "invalid"})
    assert model["status"] == "ready", model
    assert model["input_shape"] == [1, 8, 8] and model["num_classes"] == 10
    job = api.post(
        "/v1/jobs",
        headers=tenant,
        json={
            "kind": "evasion",
            "model_id": model["id"],
            "dataset_id": "builtin:digits-test",
            "params": {"attacks": [{"name": "fgsm", "eps": [0.1]}], "max_samples": 20},
        },
    )
    assert job.status_code == 202, job.text


def test_a_graph_that_leaves_its_shape_open_is_invalid_with_a_hint(api, tenant):
    from worker.engine.models.catalog import build_architecture

    buffer = io.BytesIO()
    torch.onnx.export(
        build_architecture("mlp", (1, 8, 8), 10).eval(),
        (torch.rand(1, 1, 8, 8),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch", 2: "h"}, "logits": {0: "batch"}},
    )
    created = _upload(api, tenant, buffer.getvalue())
    assert created.status_code == 202, created.text
    model = wait_for(api, f"/v1/models/{created.json()['id']}", tenant, {"ready", "invalid"})
    assert model["status"] == "invalid" and model["invalid_code"] == "shape_unknown"
    assert "input_shape" in model["invalid_reason"]


def test_safetensors_still_needs_the_interface(api, tenant):
    response = api.post(
        "/v1/models",
        headers=tenant,
        files={"file": ("w.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")},
        data={"name": "weights", "format": "safetensors", "architecture": "small-cnn"},
    )
    assert response.status_code == 422 and "input_shape" in response.json()["error"]["message"]
