"""Is this model trojaned? A scan of an uploaded model end to end over HTTP (real Postgres, Redis, worker)."""

import io

import numpy as np
import pytest
import torch

from app.schemas.reports import REPORT_ADAPTER
from tests.app.helpers import TERMINAL, npz_bytes, ready_model, upload_onnx, wait_for
from tests.engine.onnx_fixtures import export_onnx
from tests.engine.poisoning_helpers import setup, stamp_badnets
from worker.engine.datasets import load_builtin

SCAN = [{"name": "neural_cleanse", "steps": 200}]


def scan_spec(model_id: str, scan: list[dict] | None = None, **params: object) -> dict:
    """A scan of the model on the digits test set (the clean held-out set)."""
    return {
        "kind": "poisoning",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": {"scan": scan or SCAN, **params},
    }


def run(api, headers: dict, spec: dict, timeout: float = 900) -> dict:
    response = api.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 202, response.text
    return wait_for(api, f"/v1/jobs/{response.json()['id']}", headers, TERMINAL, timeout=timeout)


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("scan-tenant")


@pytest.fixture(scope="module")
def planted(api, tenant) -> dict:
    """small-cnn trained on digits with BadNets at 5% (2x2 white patch, all to class 0), uploaded as ONNX."""
    train = load_builtin("digits-train")
    x, y, _ = stamp_badnets(train, 0.05)
    with torch.random.fork_rng():
        module, _ = setup("small-cnn", epochs=8, seed=1).train(x, y, stage="test")
    return ready_model(api, tenant, export_onnx(module, (1, 8, 8)))


@pytest.mark.service
@pytest.mark.slow
def test_scan_flags_the_planted_class_with_its_trigger(api, tenant, planted):
    job = run(api, tenant, scan_spec(planted["id"]))
    assert job["status"] == "succeeded", job
    assert job["summary"]["suspected_classes"] == [0]
    assert job["summary"]["derived_model_ids"] == []
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)
    assert report["mode"] == "scan"
    (section,) = report["scanners"]
    assert section["flagged_classes"] == [0] and section["threshold"] == 2.0
    row = section["classes"][0]
    assert row["flagged"] and row["anomaly_index"] > 2 and row["trigger_success"] >= 0.9
    assert "repair" in section["advice"]
    artifacts = api.get(f"/v1/jobs/{job['id']}/artifacts", headers=tenant).json()["items"]
    kinds = {a["kind"] for a in artifacts}
    assert {"reversed_trigger", "trigger_image"} <= kinds
    (npz,) = [a for a in artifacts if a["kind"] == "reversed_trigger"]
    arrays = np.load(io.BytesIO(api.get(npz["download_url"], headers=tenant).content), allow_pickle=False)
    assert arrays["mask"].shape == (1, 8, 8) and arrays["pattern"].shape == (1, 8, 8)
    page = api.get(f"/v1/jobs/{job['id']}/report.html", headers=tenant)
    assert page.status_code == 200 and "Backdoor scan" in page.text


@pytest.mark.service
def test_bad_scan_input(api, tenant, planted, make_key):
    bad = [
        ({"scan": SCAN, "attacks": [{"name": "label_flip", "rate": [0.1]}]}, 422),
        ({"scan": SCAN, "train_dataset_id": "builtin:digits-train"}, 422),
        ({"scan": [{"name": "neural_cleanse", "steps": 0}]}, 422),
        ({"scan": [{"name": "nope"}]}, 422),
    ]
    for params, status in bad:
        spec = {
            "kind": "poisoning",
            "model_id": planted["id"],
            "dataset_id": "builtin:digits-test",
            "params": params,
        }
        response = api.post("/v1/jobs", headers=tenant, json=spec)
        assert response.status_code == status, (params, response.text)
    # Without scan, a training set is still required.
    spec = {
        "kind": "poisoning",
        "model_id": planted["id"],
        "dataset_id": "builtin:digits-test",
        "params": {"detection": [{"name": "strip"}]},
    }
    assert api.post("/v1/jobs", headers=tenant, json=spec).status_code == 422
    # A clean set that does not fit the model (16x16 images for an 8x8 model).
    x = np.zeros((8, 1, 16, 16), dtype=np.float32)
    response = api.post(
        "/v1/datasets",
        headers=tenant,
        data={"name": "wrong-shape"},
        files={"file": ("d.npz", npz_bytes(x=x, y=np.arange(8) % 3))},
    )
    assert response.status_code == 201, response.text
    response = api.post(
        "/v1/jobs", headers=tenant, json=scan_spec(planted["id"]) | {"dataset_id": response.json()["id"]}
    )
    assert response.status_code == 422, response.text
    # Another tenant's model is not found.
    other = make_key("scan-other-tenant")
    assert api.post("/v1/jobs", headers=other, json=scan_spec(planted["id"])).status_code == 404


@pytest.mark.service
def test_a_two_class_model_cannot_be_scanned(api, tenant):
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)).eval()
    model = upload_onnx(api, tenant, export_onnx(module, (1, 8, 8)), name="two-classes", num_classes="2")
    model = wait_for(api, f"/v1/models/{model['id']}", tenant, {"ready", "invalid"})
    assert model["status"] == "ready", model
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    response = api.post(
        "/v1/datasets",
        headers=tenant,
        data={"name": "two-classes"},
        files={"file": ("d.npz", npz_bytes(x=x, y=np.arange(8) % 2))},
    )
    assert response.status_code == 201, response.text
    spec = scan_spec(model["id"]) | {"dataset_id": response.json()["id"]}
    response = api.post("/v1/jobs", headers=tenant, json=spec)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "too_few_classes", response.text
