"""Cancellation reaches inside a long batch, on the real Postgres, Redis and live workers, and sticks."""

import time

import pytest

from tests.app.helpers import TERMINAL, evasion_spec, ready_model, wait_for

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("cancel-inside-batch")


def test_a_job_cancelled_inside_one_long_batch_stops_within_seconds_and_stays_cancelled(
    api, tenant, digits_onnx, start_worker
):
    model = ready_model(api, tenant, digits_onnx)
    # CW at its largest search on ONE batch of every sample: between-batch checks alone would wait minutes
    slow = {"name": "cw", "norm": "l2", "eps": [1.0], "binary_search_steps": 50, "steps": 100_000}
    spec = evasion_spec(model["id"], [slow], max_samples=297)
    spec["params"]["batch_size"] = 297
    job = api.post("/v1/jobs", headers=tenant, json=spec).json()
    path = f"/v1/jobs/{job['id']}"
    running = wait_for(api, path, tenant, {"running"} | TERMINAL, timeout=120)
    assert running["status"] == "running"
    time.sleep(2)  # well inside the single batch
    assert api.post(f"{path}/cancel", headers=tenant).status_code == 202
    final = wait_for(api, path, tenant, TERMINAL, timeout=30)
    assert final["status"] == "cancelled" and final["progress"] < 0.5
    # a fresh worker's reconciler runs (every second in tests): the job is never queued or run again
    start_worker(fresh=True)
    time.sleep(6)
    after = api.get(path, headers=tenant).json()
    assert after["status"] == "cancelled" and after["attempts"] == final["attempts"]
