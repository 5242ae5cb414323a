"""End to end over HTTP with real Postgres, Redis and a live worker: upload, validate, run, report."""

import io
import json
import time

import numpy as np
import pytest

from app.schemas.reports import REPORT_ADAPTER
from tests.app.helpers import TERMINAL, evasion_spec, ready_model, upload_onnx, wait_for
from worker.engine.datasets import load_builtin

pytestmark = pytest.mark.service
PGD = {"name": "pgd", "norm": "linf", "eps": [0.05, 0.2], "steps": 10}


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("e2e-tenant")


@pytest.fixture(scope="module")
def model(api, tenant, digits_onnx) -> dict:
    return ready_model(api, tenant, digits_onnx)


def test_model_upload_is_validated_to_ready_with_white_box(api, tenant, digits_onnx):
    created = upload_onnx(api, tenant, digits_onnx)
    assert created["status"] == "validating"
    model = wait_for(api, f"/v1/models/{created['id']}", tenant, {"ready", "invalid"})
    assert model["status"] == "ready" and model["white_box"] is True
    assert model["intake"]["max_abs_diff"] < 1e-3
    listed = [m["id"] for m in api.get("/v1/models", headers=tenant).json()["items"]]
    assert created["id"] in listed


def test_evasion_job_runs_to_a_report_with_progress_and_artifacts(api, tenant, model):
    job = api.post(
        "/v1/jobs",
        headers=tenant,
        json=evasion_spec(
            model["id"], [{"name": "fgsm", "norm": "linf", "eps": [0.05, 0.2]}, PGD], max_samples=150
        ),
    ).json()
    assert job["status"] == "queued"
    seen_progress = set()
    deadline = time.monotonic() + 180
    while job["status"] not in TERMINAL and time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job['id']}", headers=tenant).json()
        if job["status"] == "running":
            seen_progress.add(job["progress"])
        time.sleep(0.05)
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["finished_at"] and job["started_at"]
    assert any(0 < p < 1 for p in seen_progress), f"progress never moved: {seen_progress}"

    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    REPORT_ADAPTER.validate_python(report)  # the typed public contract
    assert report["kind"] == "evasion" and report["n_samples"] == 150 and report["seed"] == 0
    assert report["clean_accuracy"] > 0.85
    pgd = next(a for a in report["attacks"] if a["name"] == "pgd")
    by_eps = {row["eps"]: row for row in pgd["results"]}
    assert by_eps[0.2]["robust_accuracy"] < report["clean_accuracy"] - 0.3
    assert by_eps[0.2]["robust_accuracy"] <= by_eps[0.05]["robust_accuracy"]
    assert {row["eps"] for row in report["worst_case"]} == {0.05, 0.2}
    assert "torch" in report["versions"] and report["checks"]
    assert job["summary"]["clean_accuracy"] == report["clean_accuracy"]

    html = api.get(f"/v1/jobs/{job['id']}/report.html", headers=tenant)
    assert html.status_code == 200 and "<svg" in html.text

    artifacts = api.get(f"/v1/jobs/{job['id']}/artifacts", headers=tenant).json()["items"]
    adversarial = [a for a in artifacts if a["kind"] == "adversarial_examples"]
    assert len(adversarial) == 2
    pgd_artifact = next(a for a in adversarial if "pgd" in a["name"])
    download = api.get(pgd_artifact["download_url"], headers=tenant)
    assert download.status_code == 200
    arrays = np.load(io.BytesIO(download.content), allow_pickle=False)
    clean = load_builtin("digits-test").x[:150]
    for index, eps in enumerate(arrays["eps"]):
        delta = np.abs(arrays["x_adv"][index] - clean).reshape(150, -1).max(axis=1)
        assert delta.max() <= eps + 1e-5
        assert arrays["x_adv"][index].min() >= 0.0 and arrays["x_adv"][index].max() <= 1.0


def test_report_is_409_until_the_job_succeeded(api, tenant, model):
    job = api.post("/v1/jobs", headers=tenant, json=evasion_spec(model["id"], [PGD], max_samples=20)).json()
    early = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant)
    if early.status_code != 200:
        assert early.status_code == 409 and early.json()["error"]["code"] == "report_not_ready"
    wait_for(api, f"/v1/jobs/{job['id']}", tenant, TERMINAL)


def test_server_sent_events_follow_the_job_to_its_end(api, tenant, model):
    job = api.post("/v1/jobs", headers=tenant, json=evasion_spec(model["id"], [PGD], max_samples=30)).json()
    states = []
    with api.stream("GET", f"/v1/jobs/{job['id']}/events", headers=tenant) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line.removeprefix("data: "))["status"])
    assert states[-1] == "succeeded"
    assert states[0] in {"queued", "running"}


def test_cancel_a_running_job_stops_it_between_batches(api, tenant, model):
    slow = {"name": "pgd", "norm": "linf", "eps": [0.1, 0.2, 0.3], "steps": 500, "restarts": 3}
    spec = evasion_spec(model["id"], [slow], max_samples=297)
    spec["params"]["batch_size"] = 8
    running = api.post("/v1/jobs", headers=tenant, json=spec).json()
    assert wait_for(api, f"/v1/jobs/{running['id']}", tenant, {"running"} | TERMINAL)["status"] == "running"

    assert api.post(f"/v1/jobs/{running['id']}/cancel", headers=tenant).status_code == 202
    final = wait_for(api, f"/v1/jobs/{running['id']}", tenant, TERMINAL, timeout=60)
    assert final["status"] == "cancelled" and final["progress"] < 1.0
    again = api.post(f"/v1/jobs/{running['id']}/cancel", headers=tenant)
    assert again.status_code == 409
    assert api.get(f"/v1/jobs/{running['id']}/report", headers=tenant).status_code == 409


def test_cancel_a_queued_job_is_immediate_and_no_worker_runs_it(api, tenant, model, settings):
    """A queued row whose message is still on its way (here: never sent) is cancelled at once."""
    from app.auth import tenant_for_authorization
    from app.db import session_scope
    from app.orm import Job

    with session_scope(api.app.state.session_factory) as session:
        tenant_id = tenant_for_authorization(session, tenant["Authorization"])
        job = Job(
            tenant_id=tenant_id,
            kind="evasion",
            model_id=model["id"],
            dataset_id="builtin:digits-test",
            params=evasion_spec(model["id"], [PGD])["params"],
            stage="queued",
        )
        session.add(job)
        session.flush()
        job_id = job.id
    cancelled = api.post(f"/v1/jobs/{job_id}/cancel", headers=tenant)
    assert cancelled.status_code == 202
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["finished_at"] is not None and body["attempts"] == 0
    time.sleep(settings.requeue_after_s + 2 * settings.reconcile_interval_s)
    after = api.get(f"/v1/jobs/{job_id}", headers=tenant).json()
    assert after["status"] == "cancelled" and after["attempts"] == 0 and after["started_at"] is None


def test_idempotency_key_returns_the_same_job_and_refuses_a_different_spec(api, tenant, model):
    spec = evasion_spec(model["id"], [PGD], max_samples=10)
    headers = {**tenant, "Idempotency-Key": "nightly-2026-11-25"}
    first = api.post("/v1/jobs", headers=headers, json=spec).json()
    second = api.post("/v1/jobs", headers=headers, json=spec).json()
    assert first["id"] == second["id"]
    other = api.post("/v1/jobs", headers=headers, json={**spec, "seed": 1})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    wait_for(api, f"/v1/jobs/{first['id']}", tenant, TERMINAL)


def test_sanity_runs_are_on_by_default_and_can_be_left_out(api, tenant, model):
    def checks(**params: object) -> set[str]:
        spec = evasion_spec(model["id"], [PGD], max_samples=30)
        spec["params"] |= params
        job = wait_for(
            api, f"/v1/jobs/{api.post('/v1/jobs', headers=tenant, json=spec).json()['id']}", tenant, TERMINAL
        )
        assert job["status"] == "succeeded", job
        report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
        return {check["name"] for check in report["checks"]}

    extra_runs = {"unbounded_attack_breaks_everything", "more_iterations_change_little"}
    assert extra_runs <= checks()
    left = checks(sanity_runs=False)
    assert not extra_runs & left and left  # the checks that need no extra run remain


def test_list_jobs_filters_and_paginates(api, tenant, make_key, digits_onnx):
    other = make_key("pagination-tenant")
    ready = ready_model(api, other, digits_onnx)
    ids = [
        api.post("/v1/jobs", headers=other, json=evasion_spec(ready["id"], [PGD], max_samples=5)).json()["id"]
        for _ in range(5)
    ]
    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/jobs", headers=other, params=params).json()
        pages.append([job["id"] for job in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [job_id for page in pages for job_id in page] == list(reversed(ids))
    assert [len(p) for p in pages] == [2, 2, 1]
    evasion = api.get("/v1/jobs", headers=other, params={"kind": "evasion", "limit": 100}).json()["items"]
    assert len(evasion) == 5
    for job_id in ids:
        wait_for(api, f"/v1/jobs/{job_id}", other, TERMINAL)
    done = api.get("/v1/jobs", headers=other, params={"status": "succeeded", "limit": 100}).json()["items"]
    assert sorted(job["id"] for job in done) == sorted(ids)
    assert api.get("/v1/jobs", headers=other, params={"cursor": "not-a-cursor"}).status_code == 422
