"""Scan, repair, attack the repaired model by id: a backdoor repair end to end over HTTP (real Postgres,
Redis and a live worker), and the repair's refusals."""

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from app.schemas.reports import REPORT_ADAPTER
from app.schemas.reports.headline import headline, metric
from tests.app.helpers import (
    TERMINAL,
    artifacts_of,
    derived_of,
    download,
    evasion_spec,
    npz_bytes,
    ready_model,
    upload_onnx,
    wait_for,
)
from tests.app.remote_endpoint import remote_linear_model
from tests.engine.onnx_fixtures import export_onnx
from tests.engine.poisoning_helpers import setup, stamp_badnets
from worker.engine.datasets import load_builtin
from worker.engine.models.intake import OnnxRuntimeClassifier

TRIGGER = {"name": "badnets", "size": 2, "location": "bottom_right"}
CLEAN_SET = 150


def repair_spec(model_id: str, train_id: str, **defense: object) -> dict:
    """A Neural Cleanse unlearning repair, the planted trigger supplied, measured on the digits test set."""
    return {
        "kind": "defense",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": {
            "train_dataset_id": train_id,
            "defense": {
                "name": "backdoor_repair",
                "method": "neural_cleanse",
                "trigger": TRIGGER,
                "target_class": 0,
                "scan_steps": 200,
                **defense,
            },
        },
    }


def run(api, headers: dict, spec: dict, timeout: float = 900) -> dict:
    response = api.post("/v1/jobs", headers=headers, json=spec)
    assert response.status_code == 202, response.text
    return wait_for(api, f"/v1/jobs/{response.json()['id']}", headers, TERMINAL, timeout=timeout)


def upload_set(api, headers: dict, name: str, x: np.ndarray, y: np.ndarray) -> str:
    response = api.post(
        "/v1/datasets", headers=headers, data={"name": name}, files={"file": ("d.npz", npz_bytes(x=x, y=y))}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("repair-tenant")


@pytest.fixture(scope="module")
def planted(api, tenant) -> dict:
    """small-cnn trained on digits with BadNets at 5% (2x2 white patch, all to class 0), uploaded as ONNX."""
    train = load_builtin("digits-train")
    x, y, _ = stamp_badnets(train, 0.05)
    with torch.random.fork_rng():
        module, _ = setup("small-cnn", epochs=8, seed=1).train(x, y, stage="test")
    return ready_model(api, tenant, export_onnx(module, (1, 8, 8)))


@pytest.fixture(scope="module")
def clean_set(api, tenant) -> str:
    """150 clean digits of the training split: the defender's small clean set."""
    train = load_builtin("digits-train")
    picks = np.random.default_rng(0).choice(len(train.x), CLEAN_SET, replace=False)
    return upload_set(api, tenant, "clean-digits", train.x[picks], train.y[picks])


def _success(onnx_bytes: bytes) -> float:
    """The planted trigger's success on held-out digits of other classes, through onnxruntime."""
    test = load_builtin("digits-test")
    triggered = test.x[test.y != 0].copy()
    triggered[:, :, -2:, -2:] = 1.0
    return float((OnnxRuntimeClassifier(onnx_bytes)(triggered).argmax(1) == 0).mean())


@pytest.mark.service
@pytest.mark.slow
def test_scan_repair_then_attack_the_repaired_model(api, tenant, planted, clean_set):
    scan = {
        "kind": "poisoning",
        "model_id": planted["id"],
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": {"scan": [{"name": "neural_cleanse", "steps": 200}]},
    }
    scanned = run(api, tenant, scan)
    assert scanned["status"] == "succeeded", scanned
    assert scanned["summary"]["suspected_classes"] == [0]

    job = run(api, tenant, repair_spec(planted["id"], clean_set))
    assert job["status"] == "succeeded", job.get("error")
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    assert "evaluation" not in report and "headline" not in report
    section = report["repair"]
    assert section["n_clean"] == CLEAN_SET and section["method"]["name"] == "neural_cleanse"
    assert section["before"]["real_trigger_success"] >= 0.5
    assert section["after"]["real_trigger_success"] < 0.1
    assert section["scan_before"]["flagged"] == [0]
    assert (
        section["after"]["reversed_trigger_success"]["0"] < section["before"]["reversed_trigger_success"]["0"]
    )
    assert section["after"]["clean_accuracy"] >= section["before"]["clean_accuracy"] - 0.05
    assert metric(report, "attack_success_rate") == section["after"]["real_trigger_success"]
    assert "Backdoor repair (neural cleanse)" in headline(report).verdict

    # The repaired model is registered, its bytes measured again here give the report's figure.
    (repaired,) = derived_of(api, tenant, job["id"])
    assert report["derived_model_ids"] == [repaired["id"]]
    assert repaired["derived_from"] == planted["id"] and repaired["status"] == "ready"
    (onnx,) = [a for a in artifacts_of(api, tenant, job["id"]) if a["kind"] == "model_onnx"]
    assert onnx["name"].startswith("repaired_model_")
    assert _success(download(api, tenant, onnx)) == pytest.approx(section["after"]["real_trigger_success"])
    page = api.get(f"/v1/jobs/{job['id']}/report.html", headers=tenant)
    assert page.status_code == 200 and "Backdoor repair" in page.text and "Neural Cleanse before" in page.text

    # The repaired model attacked by id.
    pgd = {"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 5}
    attack = run(api, tenant, evasion_spec(repaired["id"], [pgd], max_samples=50))
    assert attack["status"] == "succeeded", attack
    attacked = api.get(f"/v1/jobs/{attack['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(attacked)
    assert attacked["model_id"] == repaired["id"]


@pytest.fixture(scope="module")
def remote(api, tenant) -> Iterator[dict]:
    with remote_linear_model(api, tenant) as model:
        yield model


@pytest.mark.service
def test_bad_repair_input(api, tenant, planted, clean_set, remote, make_key):
    def refused(spec: dict, headers: dict = tenant, status: int = 422) -> str:
        response = api.post("/v1/jobs", headers=headers, json=spec)
        assert response.status_code == status, response.text
        return str(response.json()["error"]["code"])

    model = planted["id"]
    assert refused(repair_spec(remote["id"], clean_set)) == "model_not_trainable"
    fresh = api.post(
        "/v1/models",
        headers=tenant,
        json={"name": "fresh", "architecture": "small-cnn", "input_shape": [1, 8, 8], "num_classes": 10},
    )
    assert fresh.status_code == 202, fresh.text
    fresh_id = wait_for(api, f"/v1/models/{fresh.json()['id']}", tenant, {"ready", "invalid"}, timeout=60)[
        "id"
    ]
    assert refused(repair_spec(fresh_id, clean_set)) == "model_untrained"
    # Another tenant's clean set is not found; a set that does not fit the model is refused.
    other = make_key("repair-other-tenant")
    x = np.random.default_rng(0).random((8, 1, 8, 8), dtype=np.float32)
    theirs = upload_set(api, other, "theirs", x, np.arange(8) % 3)
    assert refused(repair_spec(model, theirs), status=404) == "not_found"
    wrong = upload_set(api, tenant, "wrong", np.zeros((8, 1, 16, 16), dtype=np.float32), np.arange(8) % 3)
    assert refused(repair_spec(model, wrong)) == "training_set_mismatch"
    # A method's foreign parameter, a trigger without its class, an evaluation, a trigger off the image.
    assert refused(repair_spec(model, clean_set, eps=0.3)) == "invalid_request"
    spec = repair_spec(model, clean_set)
    del spec["params"]["defense"]["target_class"]
    assert refused(spec) == "invalid_request"
    spec = repair_spec(model, clean_set)
    spec["params"]["evaluation"] = {"max_samples": 10}
    assert refused(spec) == "invalid_request"
    assert refused(repair_spec(model, clean_set, trigger={**TRIGGER, "size": 9})) == "trigger_invalid"
    assert refused(repair_spec(model, clean_set, target_class=10)) == "invalid_target"
    # A two-class model.
    two = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2)).eval()
    small = upload_onnx(api, tenant, export_onnx(two, (1, 8, 8)), name="two-classes", num_classes="2")
    small = wait_for(api, f"/v1/models/{small['id']}", tenant, {"ready", "invalid"})
    two_set = upload_set(api, tenant, "two", x, np.arange(8) % 2)
    spec = repair_spec(small["id"], two_set) | {"dataset_id": two_set}
    del spec["params"]["defense"]["trigger"], spec["params"]["defense"]["target_class"]
    assert refused(spec) == "too_few_classes"
