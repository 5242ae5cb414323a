"""Issue-6 behaviour over HTTP on the real Postgres, Redis and a live worker: architecture-only models,
limits that fail early, and JSON bodies that are 422s."""

import pytest

from tests.app.helpers import evasion_spec, ready_model, wait_for

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("room-for-kinds")


@pytest.fixture(scope="module")
def model(api, tenant, digits_onnx) -> dict:
    return ready_model(api, tenant, digits_onnx)


def _architecture(api, tenant, **body):
    payload = {
        "name": "fresh",
        "architecture": "small-cnn",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        **body,
    }
    return api.post("/v1/models", headers=tenant, json=payload)


def test_an_architecture_is_validated_and_cannot_be_attacked_untrained(api, tenant):
    created = _architecture(api, tenant)
    assert created.status_code == 202, created.text
    model = wait_for(api, f"/v1/models/{created.json()['id']}", tenant, {"ready", "invalid"})
    assert model["status"] == "ready" and model["format"] == "architecture" and model["white_box"]
    job = api.post(
        "/v1/jobs", headers=tenant, json=evasion_spec(model["id"], [{"name": "fgsm", "eps": [0.1]}])
    )
    assert job.status_code == 422 and job.json()["error"]["code"] == "model_untrained"


def test_an_architecture_that_does_not_fit_its_shape_ends_invalid(api, tenant):
    created = _architecture(api, tenant, input_shape=[1, 7, 7])
    model = wait_for(api, f"/v1/models/{created.json()['id']}", tenant, {"ready", "invalid"})
    assert model["status"] == "invalid" and model["invalid_code"] == "shape_mismatch"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b'{"name": "x", "architecture": "small-cnn"}', "validation_error"),
        (
            b'{"name": "x", "architecture": "small-cnn", "input_shape": [1, 8, 8], "num_classes": 10, '
            b'"x": 1}',
            "validation_error",
        ),
        (
            b'{"name": "x", "architecture": "vgg-9000", "input_shape": [1, 8, 8], "num_classes": 10}',
            "unknown_architecture",
        ),
        (b"[]", "validation_error"),
    ],
)
def test_malformed_json_model_bodies_are_422(api, tenant, body, code):
    response = api.post("/v1/models", headers={**tenant, "Content-Type": "application/json"}, content=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_a_job_over_the_cost_limit_is_refused_naming_estimate_and_limit(api, tenant, model):
    eps = [0.01 * (i + 1) for i in range(32)]
    spec = evasion_spec(model["id"], [{"name": "square", "eps": eps, "queries": 1_000_000}], max_samples=297)
    response = api.post("/v1/jobs", headers=tenant, json=spec)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "job_too_costly" and "limit" in error["message"] and "9.5e+09" in error["message"]


def test_a_job_whose_artifacts_exceed_the_limit_is_refused_at_submission(api, tenant, model, monkeypatch):
    monkeypatch.setattr(api.app.state.settings, "max_artifact_bytes", 100_000)
    spec = evasion_spec(model["id"], [{"name": "fgsm", "eps": [0.1, 0.2]}], max_samples=297)
    response = api.post("/v1/jobs", headers=tenant, json=spec)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "artifact_too_large"
    assert "297 samples x 2 eps x 256 bytes" in error["message"]
    assert api.get("/v1/jobs", headers=tenant).json()["items"] == []
