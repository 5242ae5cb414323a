"""Defense jobs end to end over HTTP with real Postgres, Redis and a live worker."""

from collections.abc import Iterator

import numpy as np
import onnx
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

PGD = {"name": "pgd", "norm": "linf", "eps": [0.1], "steps": 10}
AT = {"name": "adversarial_training", "method": "pgd", "eps": 0.1, "epochs": 2, "init": "pretrained"}
JPEG = {"name": "preprocessing", "transforms": [{"name": "jpeg", "quality": 75}]}


def defense_spec(
    model_id: str, defense: dict, *, train: str | None = "builtin:digits-train", **evaluation
) -> dict:
    """A small defense job on digits: PGD-10 on 100 held-out samples, no extra sanity runs."""
    params: dict = {
        "defense": defense,
        "evaluation": {"attacks": [PGD], "max_samples": 100, "sanity_runs": False} | evaluation,
    }
    if train is not None:
        params["train_dataset_id"] = train
    return {
        "kind": "defense",
        "model_id": model_id,
        "dataset_id": "builtin:digits-test",
        "seed": 0,
        "params": params,
    }


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("defense-tenant")


@pytest.fixture(scope="module")
def uploaded(api, tenant, digits_onnx) -> dict:
    return ready_model(api, tenant, digits_onnx)


@pytest.mark.service
def test_adversarial_training_job_then_an_evasion_job_on_the_hardened_model(
    api, tenant, uploaded, digits_onnx
):
    from worker.engine.models.intake import OnnxRuntimeClassifier

    job = run(api, tenant, defense_spec(uploaded["id"], AT))
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    headline = report["headline"]
    assert headline["robust_accuracy"] > headline["undefended_robust_accuracy"]
    assert check_names(report) >= {"exported_model_matches_trained", "robust_below_clean"}
    assert next(c for c in report["checks"] if c["name"] == "exported_model_matches_trained")["passed"]
    assert [row["epoch"] for row in report["training"]["curve"]] == [1, 2]
    (hardened_id,) = report["derived_model_ids"]
    hardened = api.get(f"/v1/models/{hardened_id}", headers=tenant).json()
    assert hardened["status"] == "ready" and hardened["source_job_id"] == job["id"]
    assert hardened["derived_from"] == uploaded["id"] and hardened["preprocessing"] is None

    artifacts = artifacts_of(api, tenant, job["id"])
    kinds = {a["kind"] for a in artifacts}
    assert {"model_onnx", "adversarial_examples", "report_html"} <= kinds
    data = download(api, tenant, next(a for a in artifacts if a["kind"] == "model_onnx"))
    # The user's own graph with new weights.
    ops = [node.op_type for node in onnx.load_model_from_string(data).graph.node]
    assert ops == [node.op_type for node in onnx.load_model_from_string(digits_onnx).graph.node]
    test = load_builtin("digits-test")
    measured = float((OnnxRuntimeClassifier(data)(test.x[:100]).argmax(1) == test.y[:100]).mean())
    assert report["evaluation"]["defended"]["clean_accuracy"] == pytest.approx(measured)
    html = api.get(f"/v1/jobs/{job['id']}/report.html", headers=tenant).text
    assert "Robust accuracy against eps" in html and "Accuracy per epoch" in html and "<svg" in html

    attack = run(api, tenant, evasion_spec(hardened_id, [PGD], max_samples=100))
    assert attack["status"] == "succeeded", attack
    robust = api.get(f"/v1/jobs/{attack['id']}/report", headers=tenant).json()["worst_case"][0][
        "robust_accuracy"
    ]
    assert robust > headline["undefended_robust_accuracy"]


def check_names(report: dict) -> set[str]:
    return {c["name"] for c in report["checks"]}


@pytest.mark.service
def test_a_preprocessing_defense_is_a_defended_model_that_evasion_jobs_attack_with_bpda(
    api, tenant, uploaded
):
    job = run(api, tenant, defense_spec(uploaded["id"], JPEG, train=None))
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    runs = report["evaluation"]["defended"]["runs"]
    naive, adaptive = (r["worst_case"][0]["robust_accuracy"] for r in runs)
    undefended = report["headline"]["undefended_robust_accuracy"]
    assert naive >= undefended + 0.2 and adaptive <= undefended + 0.1
    assert not next(c for c in report["checks"] if c["name"] == "naive_matches_adaptive")["passed"]
    (defended_id,) = report["derived_model_ids"]
    defended = api.get(f"/v1/models/{defended_id}", headers=tenant).json()
    assert defended["status"] == "ready" and defended["preprocessing"] == [{"name": "jpeg", "quality": 75}]

    # A plain evasion job on the defended model: its white-box module applies JPEG forward and BPDA backward.
    attack = run(api, tenant, evasion_spec(defended_id, [{**PGD, "steps": 20}], max_samples=100))
    assert attack["status"] == "succeeded", attack
    attacked = api.get(f"/v1/jobs/{attack['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(attacked)  # the typed public contract
    assert attacked["worst_case"][0]["robust_accuracy"] <= undefended + 0.1 < naive


@pytest.fixture(scope="module")
def remote(api, tenant) -> Iterator[dict]:
    with remote_linear_model(api, tenant) as model:
        yield model


@pytest.mark.service
def test_bad_defense_input(api, tenant, uploaded, remote, make_key):
    def refused(spec: dict, status: int = 422) -> str:
        response = api.post("/v1/jobs", headers=tenant, json=spec)
        assert response.status_code == status, response.text
        return response.json()["error"]["code"]

    model = uploaded["id"]
    assert refused(defense_spec(model, {**AT, "eps": 2.0})) == "eps_out_of_range"
    smoothing = {"name": "randomized_smoothing", "sigma": 3.0}
    assert refused(defense_spec(model, smoothing)) == "sigma_out_of_range"
    assert refused(defense_spec(model, {"name": "distillation", "temperature": 0})) == "invalid_request"
    assert refused(defense_spec(model, {"name": "distillation", "temperature": -1})) == "invalid_request"
    assert refused(defense_spec(model, {**AT, "steps": 101})) == "invalid_request"
    assert refused(defense_spec(model, {**AT, "epochs": 201})) == "invalid_request"
    assert refused(defense_spec(model, {**AT, "unknown": 1})) == "invalid_request"
    sharpen = {"name": "preprocessing", "transforms": [{"name": "sharpen"}]}
    assert refused(defense_spec(model, sharpen, train=None)) == "invalid_request"
    assert refused(defense_spec(model, AT, train=None)) == "invalid_request"
    patch = {"name": "patch", "patch_scales": [0.2]}
    assert refused(defense_spec(model, AT, attacks=[patch])) == "invalid_request"
    assert refused(defense_spec(remote["id"], {**AT, "init": "random"})) == "model_not_trainable"
    assert refused(defense_spec(remote["id"], JPEG, train=None)) == "needs_white_box"

    fresh = api.post(
        "/v1/models",
        headers=tenant,
        json={"name": "fresh", "architecture": "small-cnn", "input_shape": [1, 8, 8], "num_classes": 10},
    )
    assert fresh.status_code == 202, fresh.text
    fresh_id = wait_for(api, f"/v1/models/{fresh.json()['id']}", tenant, {"ready", "invalid"}, timeout=60)[
        "id"
    ]
    assert refused(defense_spec(fresh_id, {**AT, "init": "pretrained"})) == "model_untrained"
    assert refused(defense_spec(fresh_id, JPEG, train=None)) == "model_untrained"

    rng = np.random.default_rng(0)

    def dataset(headers: dict, x: np.ndarray) -> str:
        response = api.post(
            "/v1/datasets",
            headers=headers,
            data={"name": "d"},
            files={"file": ("d.npz", npz_bytes(x=x, y=np.zeros(len(x), int)))},
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    small = dataset(tenant, rng.uniform(size=(50, 1, 4, 4)).astype(np.float32))
    assert refused(defense_spec(model, AT, train=small)) == "training_set_mismatch"
    theirs = dataset(make_key("defense-other-tenant"), rng.uniform(size=(50, 1, 8, 8)).astype(np.float32))
    assert refused(defense_spec(model, AT, train=theirs), status=404) == "not_found"


@pytest.mark.service
def test_jpeg_on_a_non_image_model_is_refused(api, tenant):
    import io

    import torch

    from tests.engine.onnx_fixtures import export_onnx

    flat = export_onnx(torch.nn.Sequential(torch.nn.Linear(64, 10)), (64,))
    form = {"name": "flat-onnx", "format": "onnx", "input_shape": "[64]", "num_classes": "10"}
    response = api.post("/v1/models", headers=tenant, files={"file": ("m.onnx", io.BytesIO(flat))}, data=form)
    assert response.status_code == 202, response.text
    model = wait_for(api, f"/v1/models/{response.json()['id']}", tenant, {"ready", "invalid"}, timeout=60)
    test = load_builtin("digits-test")
    flat_set = api.post(
        "/v1/datasets",
        headers=tenant,
        data={"name": "flat-digits"},
        files={"file": ("d.npz", npz_bytes(x=test.x.reshape(len(test.x), 64), y=test.y))},
    )
    assert flat_set.status_code == 201, flat_set.text
    spec = defense_spec(model["id"], JPEG, train=None)
    spec["dataset_id"] = flat_set.json()["id"]
    response = api.post("/v1/jobs", headers=tenant, json=spec)
    assert response.status_code == 422 and response.json()["error"]["code"] == "needs_images", response.text


@pytest.mark.service
def test_cancel_mid_training_registers_nothing(api, tenant, uploaded):
    job = api.post(
        "/v1/jobs", headers=tenant, json=defense_spec(uploaded["id"], {**AT, "epochs": 200})
    ).json()
    running = wait_for(api, f"/v1/jobs/{job['id']}", tenant, {"running"} | TERMINAL, timeout=120)
    assert running["status"] == "running"
    wait_for_progress(api, tenant, job["id"])
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant).status_code == 202
    final = wait_for(api, f"/v1/jobs/{job['id']}", tenant, TERMINAL, timeout=120)
    assert final["status"] == "cancelled" and final["progress"] < 1.0
    assert derived_of(api, tenant, job["id"]) == [] and artifacts_of(api, tenant, job["id"]) == []
