"""AutoAttack versions over HTTP: bad versions and subsets are 422s; fast runs and reports its check."""

import pytest

from tests.app.helpers import TERMINAL, evasion_spec, ready_model, wait_for

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def tenant(make_key, start_worker) -> dict:
    start_worker()
    return make_key("autoattack-versions-tenant")


@pytest.fixture(scope="module")
def model(api, tenant, digits_onnx) -> dict:
    return ready_model(api, tenant, digits_onnx)


@pytest.mark.parametrize(
    ("attack", "fragment"),
    [
        ({"name": "autoattack", "eps": [0.1], "version": "faster"}, "version"),
        ({"name": "autoattack", "eps": [0.1], "fast_vs_standard": 10}, "only applies to version 'fast'"),
        ({"name": "autoattack", "eps": [0.1], "version": "fast", "fast_vs_standard": -1}, "greater than"),
    ],
)
def test_bad_versions_and_subsets_are_422_invalid_request(api, tenant, model, attack, fragment):
    response = api.post("/v1/jobs", headers=tenant, json=evasion_spec(model["id"], [attack]))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert fragment in response.json()["error"]["message"]


def test_a_check_subset_larger_than_the_data_is_422(api, tenant, model):
    attack = {"name": "autoattack", "eps": [0.1], "version": "fast", "fast_vs_standard": 101}
    response = api.post("/v1/jobs", headers=tenant, json=evasion_spec(model["id"], [attack], max_samples=100))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "subset_too_large"
    assert "101" in response.json()["error"]["message"]


def test_fast_version_runs_and_reports_its_check(api, tenant, model):
    attack = {
        "name": "autoattack", "eps": [0.1], "version": "fast", "steps": 10, "square_queries": 50,
        "fast_vs_standard": 15,
    }  # fmt: skip
    accepted = api.post("/v1/jobs", headers=tenant, json=evasion_spec(model["id"], [attack], max_samples=30))
    assert accepted.status_code == 202, accepted.text
    job = wait_for(api, f"/v1/jobs/{accepted.json()['id']}", tenant, TERMINAL, timeout=300)
    assert job["status"] == "succeeded", job
    report = api.get(f"/v1/jobs/{job['id']}/report", headers=tenant).json()
    (check,) = [check for check in report["checks"] if check["name"] == "fast_vs_standard"]
    assert "on 15 random attacked samples" in check["detail"]
    row = report["attacks"][0]["results"][0]
    assert row["breakdown"]["targets"] == {"ranking": "runner_up_then_malt", "per_sample": 4}
