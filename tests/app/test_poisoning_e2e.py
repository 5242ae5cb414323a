"""Poisoning end to end over HTTP with real Postgres, Redis and a live worker."""

import io
from collections.abc import Iterator

import numpy as np
import pytest

from app.schemas.reports import REPORT_ADAPTER
from tests.app.helpers import (
    TERMINAL,
    artifacts_of,
    derived_of,
    download,
    evasion_spec,
    npz_bytes,
    ready_model,
    run,
    wait_for,
    wait_for_progress,
)
from tests.app.remote_endpoint import remote_linear_model
from worker.engine.datasets import load_builtin

ARCH = {"name": "digits-arch", "architecture": "small-cnn", "input_shape": [1, 8, 8], "num_classes": 10}
BADNETS = {"name": "badnets", "trigger": {"size": 2}, "target_class": 0, "rate": [0.1]}
FLIP = {"name": "label_flip", "mode": "targeted", "source_class": 3, "target_class": 8, "rate": [0.05]}


def poisoning_spec(model_id: str, **params: object) -> dict:
    """A small poisoning job on digits: 4 epochs of the job's recipe."""
    base = {
        "train_dataset_id": "builtin:digits-train",
        "training": {"init": "random", "epochs": 4},
        "attacks": [BADNETS],
        "detection": [{"name": "activation_clustering"}],
    }
    return {
        "kind": "poisoning",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": base | params,
    }


def upload_dataset(api, headers: dict, name: str, x: np.ndarray, y: np.ndarray):
    return api.post(
        "/v1/datasets", headers=headers, data={"name": name}, files={"file": ("d.npz", npz_bytes(x=x, y=y))}
    )


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("poisoning-tenant")


@pytest.fixture(scope="module")
def architecture(api, tenant) -> dict:
    response = api.post("/v1/models", headers=tenant, json=ARCH)
    assert response.status_code == 202, response.text
    model = wait_for(api, f"/v1/models/{response.json()['id']}", tenant, {"ready", "invalid"}, timeout=60)
    assert model["status"] == "ready", model
    return model


@pytest.fixture(scope="module")
def remote(api, tenant) -> Iterator[dict]:
    with remote_linear_model(api, tenant) as model:
        yield model


@pytest.mark.service
def test_poisoning_job_end_to_end_and_its_victim_attacked_by_id(api, tenant, architecture):
    from worker.engine.models.intake import OnnxRuntimeClassifier

    job = run(api, tenant, poisoning_spec(architecture["id"], attacks=[BADNETS, FLIP]))
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    assert all(check["passed"] for check in report["checks"]), report["checks"]
    badnets, flip = report["attacks"]
    row = badnets["results"][0]
    assert row["n_poisoned"] == 150 and row["attack_success_rate"] >= 0.8
    assert row["detection"][0]["flagged_classes"] == [0] and row["detection"][0]["f1"] >= 0.9
    assert flip["results"][0]["source_class_accuracy"] <= 0.45
    assert report["detectors"][0]["flagged_classes"] == []
    ids = report["derived_model_ids"]
    assert len(ids) == 2 == len(job["summary"]["derived_model_ids"])

    victim = api.get(f"/v1/models/{ids[0]}", headers=tenant).json()
    assert victim["status"] == "ready" and victim["source_job_id"] == job["id"]
    assert victim["derived_from"] == architecture["id"]

    artifacts = artifacts_of(api, tenant, job["id"])
    kinds = sorted(a["kind"] for a in artifacts)
    assert kinds == sorted(
        ["model_onnx"] * 2
        + ["poisoned_dataset"] * 2
        + ["suspected_indices"] * 2
        + ["trigger_image", "report_html"]
    )
    onnx = download(
        api, tenant, next(a for a in artifacts if a["kind"] == "model_onnx" and ids[0] in a["name"])
    )
    test = load_builtin("digits-test")
    triggered = test.x[test.y != 0].copy()
    triggered[:, :, -2:, -2:] = 1.0
    measured = float((OnnxRuntimeClassifier(onnx)(triggered).argmax(1) == 0).mean())
    assert row["attack_success_rate"] == pytest.approx(measured)
    poisoned = np.load(
        io.BytesIO(
            download(api, tenant, next(a for a in artifacts if a["name"] == "poisoned_0_badnets.npz"))
        ),
        allow_pickle=False,
    )
    assert len(poisoned["poison_indices"]) == 150 and (poisoned["y"][poisoned["poison_indices"]] == 0).all()
    trigger = download(api, tenant, next(a for a in artifacts if a["kind"] == "trigger_image"))
    assert trigger.startswith(b"\x89PNG")
    html = api.get(f"/v1/jobs/{job['id']}/report.html", headers=tenant).text
    assert "Success against poison rate" in html and "<svg" in html and "data:image/png;base64," in html

    attack = run(api, tenant, evasion_spec(victim["id"], [{"name": "fgsm", "eps": [0.1]}], max_samples=50))
    assert attack["status"] == "succeeded", attack


@pytest.mark.service
def test_audit_of_an_uploaded_model_names_the_poisoned_class(api, tenant):
    import torch

    from tests.engine.onnx_fixtures import export_onnx
    from tests.engine.poisoning_helpers import setup, stamp_badnets

    train = load_builtin("digits-train")
    x, y, poisons = stamp_badnets(train, 0.05)
    with torch.random.fork_rng():
        module, _ = setup("small-cnn", epochs=6).train(x, y, stage="test")
    model = ready_model(api, tenant, export_onnx(module, (1, 8, 8)))
    dataset = upload_dataset(api, tenant, "poisoned-digits", x, y)
    assert dataset.status_code == 201, dataset.text
    spec = poisoning_spec(
        model["id"],
        train_dataset_id=dataset.json()["id"],
        attacks=[],
        detection=[{"name": "activation_clustering"}, {"name": "spectral_signatures"}],
    )
    job = run(api, tenant, spec)
    assert job["status"] == "succeeded", job
    assert job["summary"]["suspected_classes"] == [0] and job["summary"]["derived_model_ids"] == []
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    assert report["mode"] == "audit" and report["detectors"][0]["top_suspects"]
    (suspects,) = [a for a in artifacts_of(api, tenant, job["id"]) if a["kind"] == "suspected_indices"]
    found = np.load(io.BytesIO(download(api, tenant, suspects)), allow_pickle=False)
    assert np.isin(found["activation_clustering_suspected"], poisons).mean() >= 0.9
    assert np.isin(poisons, found["activation_clustering_suspected"]).mean() >= 0.9


@pytest.mark.service
def test_audit_of_a_clean_model_flags_nothing(api, tenant, digits_onnx):
    model = ready_model(api, tenant, digits_onnx)
    job = run(api, tenant, poisoning_spec(model["id"], attacks=[]))
    assert job["status"] == "succeeded", job
    assert job["summary"]["suspected_classes"] == [] and job["summary"]["n_suspected"] == 0


@pytest.mark.service
def test_bad_poisoning_input(api, tenant, architecture, remote, make_key, digits_onnx):
    def refused(spec: dict, status: int = 422) -> str:
        response = api.post("/v1/jobs", headers=tenant, json=spec)
        assert response.status_code == status, response.text
        return response.json()["error"]["code"]

    arch = architecture["id"]
    with_rate = [{**BADNETS, "rate": [1.0]}]
    assert refused(poisoning_spec(arch, attacks=with_rate)) == "invalid_request"
    assert refused(poisoning_spec(arch, attacks=[{**BADNETS, "rate": [0.0]}])) == "invalid_request"
    assert (
        refused(poisoning_spec(arch, attacks=[{**FLIP, "mode": "random", "rate": [0.95]}])) == "rate_invalid"
    )
    assert refused(poisoning_spec(arch, attacks=[{**BADNETS, "target_class": 10}])) == "invalid_target"
    assert refused(poisoning_spec(arch, attacks=[{**BADNETS, "trigger": {"size": 9}}])) == "trigger_invalid"
    outside = {**BADNETS, "trigger": {"size": 2, "row": 7, "col": 0}}
    assert refused(poisoning_spec(arch, attacks=[outside])) == "trigger_invalid"
    assert refused(poisoning_spec(arch, attacks=[BADNETS], unknown=1)) == "invalid_request"
    pretrained = poisoning_spec(arch, training={"init": "pretrained", "epochs": 2})
    assert refused(pretrained) == "model_untrained"
    assert refused(poisoning_spec(arch, attacks=[])) == "model_untrained"
    assert refused(poisoning_spec(remote["id"], attacks=[])) == "audit_needs_activations"
    assert refused(poisoning_spec(remote["id"])) == "model_not_trainable"

    rng = np.random.default_rng(0)
    small = upload_dataset(
        api, tenant, "4x4", rng.uniform(size=(300, 1, 4, 4)).astype(np.float32), np.zeros(300, int)
    )
    assert refused(poisoning_spec(arch, train_dataset_id=small.json()["id"])) == "training_set_mismatch"
    loud = upload_dataset(
        api, tenant, "0-2", rng.uniform(0, 2, (300, 1, 8, 8)).astype(np.float32), np.zeros(300, int)
    )
    assert refused(poisoning_spec(arch, train_dataset_id=loud.json()["id"])) == "training_set_mismatch"
    nan = rng.uniform(size=(300, 1, 8, 8)).astype(np.float32)
    nan[3, 0, 2, 2] = np.nan
    assert upload_dataset(api, tenant, "nan", nan, np.zeros(300, int)).status_code == 422
    blend = {"name": "blended", "pattern": "uploaded", "rate": [0.05]}
    assert refused(poisoning_spec(arch, attacks=[blend])) == "invalid_request"
    pattern = upload_dataset(
        api, tenant, "pattern", rng.uniform(size=(1, 1, 4, 4)).astype(np.float32), np.zeros(1, int)
    )
    spec = poisoning_spec(arch, attacks=[blend], pattern_dataset_id=pattern.json()["id"])
    assert refused(spec) == "pattern_invalid"

    other = make_key("poisoning-other-tenant")
    theirs = upload_dataset(
        api, other, "theirs", rng.uniform(size=(300, 1, 8, 8)).astype(np.float32), np.zeros(300, int)
    )
    assert refused(poisoning_spec(arch, train_dataset_id=theirs.json()["id"]), status=404) == "not_found"


@pytest.mark.service
def test_an_uploaded_pattern_is_blended(api, tenant, architecture):
    pattern = np.random.default_rng(1).uniform(size=(1, 1, 8, 8)).astype(np.float32)
    uploaded = upload_dataset(api, tenant, "pattern-8x8", pattern, np.zeros(1, int))
    assert uploaded.status_code == 201, uploaded.text
    blend = {"name": "blended", "pattern": "uploaded", "alpha": 0.3, "rate": [0.05]}
    spec = poisoning_spec(
        architecture["id"],
        attacks=[blend],
        detection=[],
        pattern_dataset_id=uploaded.json()["id"],
        training={"epochs": 2},
    )
    job = run(api, tenant, spec)
    assert job["status"] == "succeeded", job
    artifacts = artifacts_of(api, tenant, job["id"])
    data = np.load(
        io.BytesIO(download(api, tenant, next(a for a in artifacts if a["kind"] == "poisoned_dataset")))
    )
    train = load_builtin("digits-train")
    index = data["poison_indices"]
    np.testing.assert_allclose(data["x"][index], 0.7 * train.x[index] + 0.3 * pattern[0], atol=1e-5)


@pytest.mark.service
def test_a_failed_job_registers_no_model(api, tenant, architecture):
    too_many = {**FLIP, "rate": [0.2]}  # 300 flips from a class of about 150 samples: found at run time
    job = run(api, tenant, poisoning_spec(architecture["id"], attacks=[too_many]))
    assert job["status"] == "failed" and job["error"]["code"] == "poisoning_invalid", job
    assert "Traceback" not in job["error"]["message"]
    assert derived_of(api, tenant, job["id"]) == [] and artifacts_of(api, tenant, job["id"]) == []


@pytest.mark.service
def test_cancel_mid_run_registers_nothing(api, tenant, architecture):
    spec = poisoning_spec(architecture["id"], training={"epochs": 400})
    job = api.post("/v1/jobs", headers=tenant, json=spec).json()
    running = wait_for(api, f"/v1/jobs/{job['id']}", tenant, {"running"} | TERMINAL, timeout=120)
    assert running["status"] == "running"
    wait_for_progress(api, tenant, job["id"])
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant).status_code == 202
    final = wait_for(api, f"/v1/jobs/{job['id']}", tenant, TERMINAL, timeout=120)
    assert final["status"] == "cancelled" and final["progress"] < 1.0
    assert derived_of(api, tenant, job["id"]) == [] and artifacts_of(api, tenant, job["id"]) == []


def test_repair_needs_a_backdoor_attack(api, tenant, architecture):
    flip = {**FLIP, "mode": "random", "rate": [0.1]}
    spec = poisoning_spec(architecture["id"], attacks=[flip], repair=[{"name": "neural_cleanse"}])
    response = api.post("/v1/jobs", headers=tenant, json=spec)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert "backdoor" in response.text
    foreign = poisoning_spec(architecture["id"], repair=[{"name": "fine_tuning", "eps": 0.1}])
    assert api.post("/v1/jobs", headers=tenant, json=foreign).status_code == 422
